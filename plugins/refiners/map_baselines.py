"""Baselines guided by drawn maps, as the CRAYON paper compares with them.

- ``rrr``: Ross, Hughes & Doshi-Velez, "Right for the Right Reasons: Training Differentiable Models by
  Constraining their Explanations" (IJCAI 2017).
- ``gradmask``: Simpson, Dutil, Bengio & Cohen, "GradMask: Reduce Overfitting by Regularizing
  Saliency" (MIDL 2019).
- ``actdiff``: Viviano, Simpson, Dutil, Bengio & Cohen, "Saliency is a Possible Red Herring When
  Diagnosing Poor Generalization" (ICLR 2021).
- ``bounding-box``: Rao, Böhle, Parchami-Araghi & Schiele, "Studying How to Efficiently and Effectively
  Guide Models with Explanations" (ICCV 2023): their energy loss against the object's bounding box.

Each adds ``λ ×`` its term, per image with a drawing, to the cross-entropy (:class:`MapGuided`).
``actdiff`` and ``bounding-box`` compute their terms as their public code does
(josephdviviano/saliency-red-herring, ``activmask/models/utils.py`` and ``models/loss.py``;
sukrutrao/Model-Guidance, ``losses.py``). The
gradient and activation terms are means over pixels (or features), so ``λ`` does not depend on the
image size, and ``λ`` = 1 starts them at the order of the cross-entropy of the original model on the
default benchmark (Ross et al.'s rule for choosing it): summed over the 12,288 values of a 64×64 image
they were 10³–10⁴ times larger and drove ``gradmask`` to a constant prediction.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.map_guided import MapGuided
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Batch, Classifier, GradCam, Need, bounding_boxes, hookimpl


def input_gradients(model: Classifier, images: Tensor, output) -> tuple[Tensor, Tensor]:
    """``(logits, ∂ output(logits).sum() / ∂ images)`` with the graph kept."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(images)
        (grads,) = torch.autograd.grad(output(logits).sum(), images, create_graph=True)
    return logits, grads


class RightForTheRightReasons(MapGuided):
    """``rrr``: ``mean_pixels ((1 − region) · ∂ Σ_k log p_k / ∂x)²`` over the three channels.

    The paper penalises input gradients of the summed log-probabilities on the pixels annotated
    irrelevant; here every pixel outside the drawn region is irrelevant. Images are in ``[0, 1]``.
    """


    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        logits, grads = input_gradients(model, batch.images, lambda z: torch.log_softmax(z, dim=1))
        return logits, ((~regions)[:, None] * grads).pow(2).mean(dim=(1, 2, 3))


class GradMask(MapGuided):
    """``gradmask``: ``mean_pixels (1 − region) · |∂(z_y − max_{k≠y} z_k) / ∂x|`` over the channels.

    The paper (binary tasks) regularises the saliency of the logit difference outside the mask; for
    more classes we take the true logit minus the largest other, and the L1 norm as the paper does.
    """


    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        labels = batch.labels

        def margin(logits: Tensor) -> Tensor:
            true = logits.gather(1, labels[:, None])[:, 0]
            other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
            return true - other

        logits, grads = input_gradients(model, batch.images, margin)
        return logits, ((~regions)[:, None] * grads.abs()).mean(dim=(1, 2, 3))


Shuffle = Literal["values", "pixels", "channels"]
"""How :func:`shuffle_outside` permutes the values outside a drawn region (see :class:`ActDiff`)."""


def shuffle_outside(images: Tensor, regions: Tensor, generator: torch.Generator, mode: Shuffle = "values") -> Tensor:
    """``(B, C, H, W)`` images whose values outside each drawn region ``(B, H, W)`` are randomly
    permuted; values inside stay, and an image without a drawing is left whole. ``mode``:

    - ``"values"``: one permutation of all ``C·n`` values outside (``n`` pixels), across positions
      and channels together: ActDiff's ``shuffle_outside_mask``, ``X[b, seg[b]][randperm]``, with the
      mask over every channel (its images have one channel; on one channel all modes coincide);
    - ``"pixels"``: one permutation of the ``n`` positions, the same for every channel (each pixel's
      colour moves whole, so each image keeps its colour histogram);
    - ``"channels"``: an independent permutation of the ``n`` positions per channel, drawn in channel
      order (each channel keeps its own histogram; the joint colour distribution is broken).

    Every mode draws from ``generator``, one ``randperm`` per image (``"channels"``: per channel)."""
    shuffled = images.clone()
    for b in range(len(images)):
        if not bool(regions[b].any()):
            continue
        outside = (~regions[b]).flatten().nonzero().flatten()
        n, channels = len(outside), images.shape[1]
        source, target = images[b].flatten(1), shuffled[b].flatten(1)
        if mode == "pixels":
            target[:, outside] = source[:, outside[torch.randperm(n, generator=generator).to(outside.device)]]
        elif mode == "channels":
            for c in range(channels):
                target[c, outside] = source[c, outside[torch.randperm(n, generator=generator).to(outside.device)]]
        elif mode == "values":
            values = source[:, outside].flatten()  # channel-major, as X[b, mask] orders them
            target[:, outside] = values[torch.randperm(n * channels, generator=generator).to(values.device)].view(channels, n)
        else:
            raise ValueError(f"unknown shuffle mode {mode!r}; expected one of {Shuffle.__args__}")
    return shuffled


class ActDiff(MapGuided):
    """``actdiff``: ``λ · ‖f(x) − f(x_shuffled)‖₂`` of the penultimate features ``f`` (pooled).

    ``x_shuffled`` permutes the values outside the drawn region (:func:`shuffle_outside`, ``shuffle``
    says how): a grey or zero fill would be out of distribution. The distance is the plain L2 norm
    per image (PyTorch's ``PairwiseDistance``, ``‖a − b + 10⁻⁶‖₂``), as the public code computes it;
    only the original image's cross-entropy is added. ``λ`` (``lam``) defaults to 1, as the public
    code adds the term: its ``actdiff_lamb`` only switches the term on (``ResNetModel.loss`` adds
    ``compare_activations`` unscaled, although its configurations search ``actdiff_lamb``); the
    CRAYON comparison (``misc/training_config.md``) multiplies it by 0.1 on Waterbirds and 1e-5 on
    Biased CelebA, with Adam at lr 5e-5, weight decay 1e-4, 10 epochs, batches of 128 (Waterbirds) or
    64 (Biased CelebA); the other defaults here are the shared fine-tuning ones.

    ``shuffle`` defaults to ``"values"``, what the public ``shuffle_outside_mask`` computes on a
    multi-channel image (its indexing ``X[b, seg[b]]`` needs the mask over every channel, and then
    permutes every selected value together; on its one-channel images the modes coincide). Before
    this option the shuffle was ``"pixels"``, which keeps each image's colour histogram, so a colour
    shortcut outside the drawing survives into ``x_shuffled``.
    """

    class Params(MapGuided.Params):
        lam: float = Field(
            default=1.0,
            ge=0,
            description="weight λ of the activation distance ‖f(x) − f(x_shuffled)‖₂. 1: the public ActDiff code adds the term unscaled "
            "(its actdiff_lamb only switches it on); the CRAYON comparison uses 0.1 on Waterbirds and 1e-5 on Biased CelebA",
        )
        shuffle: Shuffle = Field(
            default="values",
            description="how the values outside the drawn region are permuted: 'values' all of them together across positions and channels "
            "(the public code's shuffle_outside_mask with the mask over every channel; its images have one channel, where all modes agree), "
            "'pixels' whole pixels (each image keeps its colour histogram), 'channels' each channel's pixels independently "
            "(the joint colour distribution is broken, each channel's histogram kept)",
        )

    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        features = model.features(batch.images)
        shuffled = shuffle_outside(batch.images, regions, generator, self.params.shuffle).detach()
        distance = F.pairwise_distance(model.pool(features), model.pool(model.features(shuffled)))
        return model.head(features), distance


def box_energy(current: Tensor, regions: Tensor) -> Tensor:
    """``(B,)`` ``1 − Σ_box E↑ / Σ E↑`` of ``(B, h, w)`` non-negative maps bilinearly upsampled to the
    regions' ``(B, H, W)`` image size, over the exact pixels of each region's bounding box; where
    ``Σ E↑ < 1e-7``, ``1 − Σ_box E↑`` (Model-Guidance's ``losses.py``)."""
    upsampled = F.interpolate(current[:, None], size=tuple(regions.shape[-2:]), mode="bilinear", align_corners=False)[:, 0].clamp(min=0)
    inside = (upsampled * bounding_boxes(regions)).sum(dim=(-2, -1))
    total = upsampled.sum(dim=(-2, -1))
    small = total < 1e-7
    return 1.0 - inside / total.where(~small, 1.0)


class BoundingBox(MapGuided):
    """``bounding-box``: the energy loss :func:`box_energy` of the current Grad-CAM against the
    drawing's bounding box (an all-zero map pays 1)."""

    needs = frozenset({Need.BOXES})

    class Params(MapGuided.Params):
        lam: float = Field(default=10.0, ge=0, description="weight λ of the energy loss")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        current, logits = self.gradcam.explain(model, batch.images, batch.labels)
        return logits, box_energy(current, regions)


@hookimpl
def crayon_refiners():
    return {"rrr": RightForTheRightReasons, "gradmask": GradMask, "actdiff": ActDiff, "bounding-box": BoundingBox}
