"""``softcon``: soft bias-contrastive learning with an auxiliary bias-capturing model.

SoftCon: Hong & Yang, "Unbiased Classification through Bias-Contrastive and Bias-Balanced Learning"
(NeurIPS 2021), the variant of their bias-contrastive loss for when bias labels are unknown; the
CRAYON paper compares with it as an annotation-free baseline (its repository has no SoftCon solver,
only the ``bagnet18`` of ``src/model/cnn_softcon.py`` and the settings of ``misc/training_config.md``).
As the authors' public code computes it (grayhong/bias-contrastive-learning:
``get_imagenet_bias_features.py``, ``debias/losses/bias_contrastive.py``'s
``UnsupBiasContrastiveLoss``, ``train_imagenet_softcon.py``, the sampler of
``debias/datasets/imagenet.py``):

1. An auxiliary bias-capturing model is trained from scratch and gives pooled features ``b_i`` of
   every training image (:mod:`._bias_model`: a narrow BagNet-style network whose features each see
   a 5 × 5-pixel patch).
2. Each item's *marginal* ``m_i = Σ_r (1 − cos(b_i, b_r))`` over ``R`` = 1,024 reference items ``r``
   of its class, drawn without replacement (all of them when the class has fewer): how unlike its
   class-mates the shortcut sees it. The contrastive minibatches are drawn with replacement in
   proportion to ``min(m_i, γ · min_j m_j)``, the clipping hyperparameter γ (``clip``; 0 draws
   uniformly, as the public code's ``ratio = 0``).
3. Per step, the mean cross-entropy of a minibatch ``B`` (drawn by the shared loop, each item once per
   epoch) plus the soft contrastive loss of a minibatch ``C`` of ``contrastive_batch_size`` drawn
   items, each seen in two augmented views (SupCon's: random resized crop of scale 0.2–1, horizontal
   flip, colour jitter (0.4, 0.4, 0.4, 0.1) with probability 0.8, greyscale with probability 0.2):

   ``loss = ce_weight · mean_{i∈B} CE(z_i, y_i) + L_soft``

   ``L_soft = mean_a −Σ_{p≠a} w_ap · log( exp(s_ap/τ) / Σ_{k≠a} exp(s_ak/τ) ) / Σ_{p≠a} w_ap``

   over the ``2|C|`` views ``a``, with ``s_ap = f_a · f_p`` for the L2-normalised pooled features
   ``f`` of the model being refined and the soft positive weights ``w_ap = [y_a = y_p] · (1 −
   cos(b_a, b_p))``: a positive counts the more the less the auxiliary model sees the two images alike.
   The two views of one image have weight 0 (their shortcut features are the same). An anchor with no
   weighted positive contributes 0 (``Σ w = 0`` counts as 1), and ``1e-9`` is added inside the log,
   as the public code does.

Settings of the CRAYON repository's ``misc/training_config.md``:

- Waterbirds: the auxiliary BagNet18 trained with Adam at lr 1e-3 for 20 epochs; the original model
  refined with Adam at lr 5e-5, batches of 32, for 10 epochs; temperature 0.1, cross-entropy weight
  1, clipping γ = 50.
- Biased CelebA: the same (temperature 0.1, cross-entropy weight α = 1, γ = 50).
- (Backgrounds Challenge: batches of 128, temperature 0.07, α = 1e4, γ = 0.)

Defaults here: temperature 0.1, ``ce_weight`` 1 and ``clip`` 50 as above; batches of 32 as above for
the cross-entropy minibatch and, since the settings name one batch size, for the contrastive one too
(the public code's default contrastive minibatch is 64); weight decay 1e-4, the public code's Adam's.
For the embedded benchmark (64-px images, a small timm backbone, a few epochs), the auxiliary model
trains for ``bias_epochs`` = 3 instead of 20, and the refinement runs ``epochs`` = 3 at lr 1e-4
(``finetune``'s), not 10 at 5e-5: each step also passes two views of a second minibatch, so with the
auxiliary model this costs about 2.5 times ``finetune``'s three epochs. Measured once (seed 0, two shared CPU cores, the
times comparable only with each other): original WGA 13.2 %; ``finetune`` 75.2 % in 184 s;
``softcon`` 87.6 % in 468 s (auxiliary model included); ``jtt`` (its default search grid) 85.2 % in
2,741 s.

Known differences from the public code: no learning-rate schedule (the shared loop's constant Adam;
the public scripts decay it); the colour-jitter adjustments are applied in the fixed order
brightness, contrast, saturation, hue (torchvision's ``ColorJitter`` shuffles them); the auxiliary
model's features are taken of the images as the dataset gives them (no augmentation); when every
clipped weight is 0 (every item's marginal 0, or a class of one image, whose marginal is 0, sets the
bound to 0; the public code's sampler raises an error then) the contrastive minibatches are drawn
uniformly; an image's weight with its own other view is exactly 0, where the public code's
floating-point ``1 − cos(b_i, b_i)`` leaves about ±1e-7, which, for an anchor with no other weighted
positive, makes its loss the plain instance-contrastive term on its other view (the cosines are
taken in float64 and clamped at 0 here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from crayon_plugins.plugins.refiners._bias_model import BiasModelOptions, bias_features, train_bias_model
from pydantic import Field, PositiveInt
from torch import Tensor

from crayon_plugins.api import Batch, Classifier, FineTuning, Items, RefinementContext, hookimpl, log_term, random_resized_crop_box, to_device

REFERENCES = 1024
"""``R``: reference items per class for an item's marginal (the public code's ``N_ref``)."""


def soft_positive_weights(bias_features: Tensor, labels: Tensor) -> Tensor:
    """``(n, n)`` ``w_ij = [y_i = y_j] · (1 − cos(b_i, b_j))``, the cosines in float64, clamped at 0,
    and the diagonal exactly 0 (an image's bias features are its own: its other view is no positive)."""
    unit = F.normalize(bias_features.double(), dim=1)
    weights = (labels[:, None] == labels[None, :]).double() * (1 - unit @ unit.T).clamp(min=0)
    return weights.fill_diagonal_(0).float()


def softcon_loss(features: Tensor, labels: Tensor, bias_features: Tensor, temperature: float) -> Tensor:
    """``L_soft`` of ``features`` ``(n, V, D)``: ``V`` L2-normalised views of each of ``n`` images, with
    their ``labels`` ``(n,)`` and the auxiliary model's ``bias_features`` ``(n, D_b)``; every view is an
    anchor, every other view a candidate positive weighted by :func:`soft_positive_weights`."""
    n, views = features.shape[:2]
    contrast = features.transpose(0, 1).reshape(n * views, -1)  # view-major: all first views, then all second
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.amax(dim=1, keepdim=True).detach()
    others = 1 - torch.eye(n * views, dtype=logits.dtype, device=logits.device)
    weights = soft_positive_weights(bias_features, labels).to(logits).repeat(views, views) * others
    log_prob = logits - torch.log((logits.exp() * others).sum(dim=1, keepdim=True) + 1e-9)
    total = weights.sum(dim=1)
    total = torch.where(total == 0, torch.ones_like(total), total)
    return -((weights * log_prob).sum(dim=1) / total).mean()


def marginals(bias_features: Tensor, labels: Tensor, generator: torch.Generator, references: int = REFERENCES) -> Tensor:
    """``(N,)`` float64 ``m_i = Σ_r (1 − cos(b_i, b_r))`` over ``references`` items ``r`` of ``i``'s class
    drawn without replacement from ``generator`` (every item of the class when it has fewer; ``i`` may
    be among them, adding 0)."""
    unit = F.normalize(bias_features.double(), dim=1)
    found = torch.zeros(len(labels), dtype=torch.float64)
    for k in labels.unique().tolist():
        members = (labels == k).nonzero().flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:references]]
        found[members] = (1 - unit[members] @ unit[chosen].T).sum(dim=1)
    return found


def sampling_weights(marginal: Tensor, clip: float) -> Tensor:
    """How often contrastive minibatches draw each item: ``min(m_i, γ · min_j m_j)`` (γ = ``clip``);
    uniform when ``clip`` is 0, or when every clipped weight is 0."""
    if clip == 0:
        return torch.ones_like(marginal)
    weights = marginal.clamp(min=0)
    weights = weights.clamp(max=float(weights.min()) * clip)
    return weights if float(weights.sum()) > 0 else torch.ones_like(marginal)


def supcon_view(image: Tensor, generator: torch.Generator) -> Tensor:
    """One SupCon view of a ``(3, H, W)`` image in ``[0, 1]``: random resized crop (area 0.2–1, aspect
    3/4–4/3, torchvision's ten tries then the central crop) back to ``H × W``, horizontal flip (p 0.5),
    colour jitter (brightness, contrast, saturation ×[0.6, 1.4], hue ±0.1; p 0.8), greyscale (p 0.2);
    every draw from ``generator``."""
    _, height, width = image.shape
    uniform = lambda low, high: low + (high - low) * float(torch.rand(1, generator=generator))  # noqa: E731
    top, left, h, w = random_resized_crop_box(height, width, (0.2, 1.0), generator)
    view = TF.resized_crop(image, top, left, h, w, [height, width], antialias=True)
    if uniform(0, 1) < 0.5:
        view = TF.horizontal_flip(view)
    if uniform(0, 1) < 0.8:
        view = TF.adjust_brightness(view, uniform(0.6, 1.4))
        view = TF.adjust_contrast(view, uniform(0.6, 1.4))
        view = TF.adjust_saturation(view, uniform(0.6, 1.4))
        view = TF.adjust_hue(view, uniform(-0.1, 0.1))
    if uniform(0, 1) < 0.2:
        view = TF.rgb_to_grayscale(view, num_output_channels=3)
    return view.clamp(0, 1)


@dataclass
class Contrast:
    """What the soft contrastive term needs besides the minibatch: the training images and labels, the
    auxiliary model's features, the sampling weights, and the generators of the draws and the views."""

    images: Items
    labels: Tensor
    bias_features: Tensor
    weights: Tensor
    draws: torch.Generator
    views: torch.Generator


class SoftCon(FineTuning):
    """Mean cross-entropy ``× ce_weight`` plus the soft bias-contrastive loss on two views of a second
    minibatch, drawn in proportion to the clipped marginals of an auxiliary bias-capturing model."""

    class Params(BiasModelOptions, FineTuning.Params):
        epochs: int = Field(default=3, gt=0, description="refinement epochs (CRAYON's Waterbirds and Biased CelebA setting: 10)")
        lr: float = Field(default=1e-4, gt=0, description="Adam learning rate of the refinement (CRAYON's setting: 5e-5)")
        weight_decay: float = Field(default=1e-4, ge=0, description="Adam weight decay of the refinement (the public code's: 1e-4)")
        batch_size: PositiveInt = Field(default=32, description="the cross-entropy minibatch (CRAYON's setting: 32)")
        contrastive_batch_size: PositiveInt = Field(default=32, description="images per contrastive minibatch, each in two views (the public code's default: 64)")
        temperature: float = Field(default=0.1, gt=0, description="τ of the contrastive loss (CRAYON's setting: 0.1)")
        ce_weight: float = Field(default=1.0, ge=0, description="the cross-entropy's weight α (CRAYON's setting: 1)")
        clip: float = Field(default=50.0, ge=0, description="γ: sampling weights clipped at γ × the smallest marginal; 0 draws the contrastive minibatches uniformly (CRAYON's setting: 50)")
        augment: bool = Field(default=True, description="two SupCon-augmented views per contrastive image; false: two copies of the image")

    def prepare(self, model: Classifier, context: RefinementContext) -> Contrast:
        p, train = self.params, context.train
        auxiliary = train_bias_model(context, p, f"{self.name} auxiliary model ({p.bias_epochs} epochs)")
        features = bias_features(auxiliary, train.images, context.device)
        marginal = marginals(features, train.labels, torch.Generator().manual_seed(context.seed))
        seeded = lambda k: torch.Generator().manual_seed(context.seed + k)  # noqa: E731
        return Contrast(train.images, train.labels, features, sampling_weights(marginal, p.clip), seeded(1), seeded(2))

    def loss(self, model: Classifier, batch: Batch, prepared: Contrast) -> Tensor:
        p, device = self.params, batch.images.device
        prediction = F.cross_entropy(model(batch.images), batch.labels)
        log_term("cross_entropy", prediction, "mean")
        drawn = torch.multinomial(prepared.weights, p.contrastive_batch_size, replacement=True, generator=prepared.draws)
        images = to_device(prepared.images[drawn], device)
        if p.augment:
            views = torch.stack([supcon_view(image, prepared.views) for _ in range(2) for image in images])
        else:
            views = images.repeat(2, 1, 1, 1)
        pooled = F.normalize(model.pool(model.features(views)), dim=1)
        n = len(drawn)
        contrastive = softcon_loss(torch.stack([pooled[:n], pooled[n:]], dim=1), prepared.labels[drawn].to(device), prepared.bias_features[drawn].to(device), p.temperature)
        log_term("softcon", contrastive, "mean")
        return p.ce_weight * prediction + contrastive


@hookimpl
def crayon_refiners():
    return {"softcon": SoftCon}
