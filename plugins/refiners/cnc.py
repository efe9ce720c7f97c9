"""``cnc``: Correct-N-Contrast (Zhang, Sohoni, Zhang, Finn & Ré, "Correct-N-Contrast: A Contrastive
Approach for Improving Robustness to Spurious Correlations", ICML 2022, arXiv 2203.01517), an
annotation-free baseline.

As the public code computes it (github.com/HazyResearch/correct-n-contrast: ``slice.py``,
``contrastive_supervised_loader.py``, ``contrastive_network.py`` and ``train_epoch`` in
``train_supervised_contrast.py``, run with ``--no_projection_head``):

**Stage one** infers groups from the ERM (original) model's predictions ``a_i`` on the training split.
Its slice ``s`` is the items predicted ``s``: its **anchors** are the ones predicted right (label
``s``), its **negatives** the ones predicted wrong (another class, the same prediction; a slice with
none takes every item of a class other than its most frequent one). The **positives** of class ``c``
are its items predicted wrong (the same class, another prediction), or all its items where there are
none.

**Stage two** trains on contrastive groups. An epoch has, per slice with anchors, ``m`` of them in a
random order, ``m`` the smallest slice's number of anchors (``anchor_share`` of each slice, the code's
``target_sample_ratio``, drawn afresh each epoch), the slices interleaved. A group of anchor ``a₀`` of
slice ``s`` holds ``A``: ``a₀`` and ``k_a − 1`` anchors of ``s``; ``P``: ``k_p`` positives of ``s``'s
class; ``N``: ``k_n`` negatives of ``s``; ``E``: ``k_n`` "easy" negatives, anchors of the slice that
predicts the first positive ``p₀`` (each drawn without replacement, with it where the pool is too
small). ``k = group_size`` is cut as the code's ``adjust_num_pos_neg_`` cuts it:
``k_p = min(k, smallest class's positives)``, ``k_n = min(k, smallest slice's negatives)``,
``k_a = min(k, k_p, k_n)``. With ``z`` the penultimate (pooled) features of
:class:`~crayon_plugins.api.Classifier` (``model.pool(model.features(x))``), ``sim`` the cosine
similarity and ``T`` the temperature, the code's ``SupervisedContrastiveLoss`` of an anchor ``u``::

    L(u; P, N) = mean_{p ∈ P} −log( e^{sim(u,p)/T} / (Σ_{n ∈ N} e^{sim(u,n)/T} + Σ_{p' ∈ P} e^{sim(u,p')/T}) )

and a group's loss, two-sided, with cross-entropy on the classifier's logits of the group's first
``k_a`` anchors, positives, negatives and easy negatives::

    L_g = λ · (L(a₀; P, N) + L(p₀; A, E)) + (1 − λ) · mean CE

``λ`` = ``contrastive_weight`` (0.75). A step's loss is the mean over its groups (the code accumulates
each group's gradient divided by the groups per step, ``batch_factor``); ``batch_size`` here counts
groups. As in the code the model trains in evaluation mode (``encoder.eval()``: batch-norm statistics
stay those of the starting model). A group whose easy-negative pool is empty (the slice predicting
``p₀`` has no anchors) leaves out the second term (its cross-entropy takes its negatives twice); a
slice without anchors (every item it holds is predicted wrong) gives no groups; in the code both
would stop the run.

Settings of the CRAYON repository (``misc/training_config.md``): **Waterbirds**: Adam, lr 1e-5, weight
decay 1e-4, batch size 128, 10 epochs. **Biased CelebA**: Adam, lr 1e-5, weight decay 1e-1, batch
size 64, 5 epochs. (The CnC code's own commands: Waterbirds SGD lr 1e-4, momentum 0.9, weight decay
1e-3, 5 epochs, 17 anchors, positives, negatives and easy negatives, 32 groups per step, T = 0.1,
λ = 0.75, ``target_sample_ratio`` 1; CelebA lr 1e-5, weight decay 1e-1, 15 epochs, 64 of each,
T = 0.05, ratio 0.1.)

Defaults differ, for the embedded benchmark (64 px, ``resnet10t``, a few epochs): ``finetune``'s
3 epochs, lr 1e-4 and weight decay 1e-4; groups of 4 of each kind (16 images), 8 groups per step (128
images, CRAYON's batch size), ``anchor_share`` 0.15, so the refiner passes about as many images as
``jtt`` does. Training starts from the original model (``start = "original"``, as CRAYON refines
it); the code trains a new model (``start = "new"``: ``context.build_model``, the backbone's initial
weights, pretrained where the backbone is, as the code's ImageNet ResNet-50) with a new classifier.
The code never clears its classifier's gradient within an epoch (it accumulates over the steps);
here every step's gradient is its own. Where ``k_a < k_p``, the code's second term takes the first
``k_p`` items after ``p₀`` as positives, some of them easy negatives; here its positives are ``A``. Every trainer here uses Adam (the code's Waterbirds run uses
SGD); images are not augmented (the code's default).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from crayon_plugins.api import Classifier, CrayonError, Optimisation, RefinementContext, Refiner, fit, hookimpl, log_term, predict, to_device


def contrastive_loss(anchors: Tensor, positives: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """``(G,)`` the code's supervised contrastive loss of each group's anchor ``(G, D)`` against its
    positives ``(G, P, D)`` and negatives ``(G, N, D)``:
    ``mean_p [log(Σ_n e^{sim(u,n)/T} + Σ_p' e^{sim(u,p')/T}) − sim(u,p)/T]``, ``sim`` the cosine."""
    to_positives = F.cosine_similarity(anchors[:, None], positives, dim=-1) / temperature
    to_negatives = F.cosine_similarity(anchors[:, None], negatives, dim=-1) / temperature
    return torch.logsumexp(torch.cat([to_negatives, to_positives], dim=1), dim=1) - to_positives.mean(dim=1)


@dataclass(frozen=True)
class Slices:
    """Stage one's groups, by the ERM model's predictions ``predicted`` on the training split.

    ``anchors[s]``, ``negatives[s]``: item indices of slice ``s`` (the classes the model predicts, in
    order) predicted right, and predicted wrong (or the fallback); ``positives[c]``: items of class
    ``c`` predicted wrong (or all of class ``c``)."""

    classes: tuple[int, ...]
    anchors: tuple[Tensor, ...]
    negatives: tuple[Tensor, ...]
    positives: dict[int, Tensor]
    predicted: Tensor

    @classmethod
    def of(cls, predicted: Tensor, labels: Tensor) -> Slices:
        classes = tuple(predicted.unique(sorted=True).tolist())
        anchors, negatives = [], []
        for s in classes:
            inside = predicted == s
            anchors.append((inside & (labels == s)).nonzero().flatten())
            wrong = (inside & (labels != s)).nonzero().flatten()
            if len(wrong) == 0:  # the code: every item whose class is not the slice's most frequent
                most = int(torch.bincount(labels[inside]).argmax())
                wrong = (labels != most).nonzero().flatten()
            negatives.append(wrong)
        positives = {}
        for c in labels.unique(sorted=True).tolist():
            wrong = ((labels == c) & (predicted != c)).nonzero().flatten()
            positives[c] = wrong if len(wrong) else (labels == c).nonzero().flatten()
        return cls(classes, tuple(anchors), tuple(negatives), positives, predicted)

    def sizes(self, group_size: int) -> tuple[int, int, int]:
        """``(k_a, k_p, k_n)``, cut to the smallest pools as the code's ``adjust_num_pos_neg_``."""
        k_p = min(group_size, *(len(p) for p in self.positives.values()))
        k_n = min(group_size, *(len(n) for n in self.negatives))
        return min(group_size, k_p, k_n), k_p, k_n

    def epoch(self, share: float, generator: torch.Generator) -> Tensor:
        """``(S·m, 2)`` one epoch's anchors as (slice, item) rows: per slice with anchors, ``share``
        of them drawn anew, all cut to the smallest slice's number ``m``, in a random order, slices
        interleaved."""
        used = [s for s, a in enumerate(self.anchors) if len(a)]
        m = min(max(1, round(share * len(self.anchors[s]))) for s in used)
        drawn = [self.anchors[s][torch.randperm(len(self.anchors[s]), generator=generator)[:m]] for s in used]
        slices = torch.tensor(used).repeat(m)
        return torch.stack([slices, torch.stack(drawn, dim=1).flatten()], dim=1)


def draw(pool: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``k`` items of ``pool``: without replacement, or with it where the pool has fewer than ``k``
    (numpy's ``choice`` as the code calls it)."""
    if k > len(pool):
        return pool[torch.randint(len(pool), (k,), generator=generator)]
    return pool[torch.randperm(len(pool), generator=generator)[:k]]


class CorrectNContrast(Refiner):
    """Contrast anchors the ERM model gets right with same-class items it gets wrong (pulled
    together) and other-class items it predicts alike (pushed apart), plus cross-entropy."""

    class Params(Optimisation):
        epochs: PositiveInt = Field(default=3, description="epochs of contrastive training")
        lr: float = Field(default=1e-4, gt=0, description="learning rate (Adam)")
        weight_decay: float = Field(default=1e-4, ge=0, description="weight decay")
        batch_size: PositiveInt = Field(default=8, description="contrastive groups per step (the code's batch_factor)")
        group_size: PositiveInt = Field(default=4, description="k: anchors, positives, negatives and easy negatives per group, each")
        anchor_share: float = Field(default=0.15, gt=0, le=1, description="share of each slice's anchors an epoch uses (the code's target_sample_ratio)")
        temperature: float = Field(default=0.1, gt=0, description="T: temperature of the contrastive loss")
        contrastive_weight: float = Field(default=0.75, ge=0, le=1, description="λ: weight of the contrastive terms; cross-entropy gets 1 − λ")
        start: Literal["original", "new"] = Field(default="original", description="train from the original model (CRAYON refines it) or a new one (the code's)")

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        p, train, device = self.params, context.train, context.device
        was_training = model.training
        slices = Slices.of(predict(model, train.images, device).argmax(dim=1), train.labels)
        model.train(was_training)  # predict puts the model it is given in evaluation mode
        if not any(len(a) for a in slices.anchors):
            raise CrayonError(f"refiner {self.name!r} contrasts items the original model predicts right, and it predicts none of the training split right")
        k_a, k_p, k_n = slices.sizes(p.group_size)
        generator = torch.Generator().manual_seed(context.seed)
        epochs = [slices.epoch(p.anchor_share, generator) for _ in range(p.epochs)]
        n = len(epochs[0])
        steps_per_epoch = -(-n // p.batch_size)
        refined = self.start(model, context)
        step = 0

        def batch_loss(indices: Tensor, _: Tensor | None) -> Tensor:
            nonlocal step
            rows = epochs[min(step // steps_per_epoch, len(epochs) - 1)][indices]
            step += 1
            groups, two_sided = [], []
            for s, anchor in rows.tolist():
                pool = slices.anchors[s]
                extra = draw(pool, k_a - 1, generator)
                positives = draw(slices.positives[slices.classes[s]], k_p, generator)
                negatives = draw(slices.negatives[s], k_n, generator)
                source = int(slices.predicted[positives[0]])
                easy_pool = slices.anchors[slices.classes.index(source)] if source in slices.classes else pool[:0]
                two_sided.append(len(easy_pool) > 0)
                easy = draw(easy_pool, k_n, generator) if len(easy_pool) else negatives  # only for the cross-entropy
                groups.append(torch.cat([torch.tensor([anchor]), extra, positives, negatives, easy]))
            items = torch.stack(groups)  # (G, k_a + k_p + 2·k_n)
            refined.eval()  # the code trains its encoder in evaluation mode
            images = to_device(train.images[items.flatten()], device)
            features = refined.pool(refined.features(images))
            logits = refined.classifier(features)
            features = features.view(len(items), items.shape[1], -1)
            a, pos, neg, easy = features.split([k_a, k_p, k_n, k_n], dim=1)
            first = contrastive_loss(a[:, 0], pos, neg, p.temperature)
            second = contrastive_loss(pos[:, 0], a, easy, p.temperature) * torch.tensor(two_sided, device=features.device)
            contrastive = (first + second).mean()
            labels = to_device(train.labels[items], device)
            kept = torch.cat([torch.arange(k_a), k_a + torch.arange(k_a), k_a + k_p + torch.arange(k_a), k_a + k_p + k_n + torch.arange(k_a)])
            cross_entropy = F.cross_entropy(logits.view(len(items), items.shape[1], -1)[:, kept].flatten(0, 1), labels[:, kept].flatten())
            log_term("contrastive", contrastive, "mean")
            log_term("cross_entropy", cross_entropy, "mean")
            return p.contrastive_weight * contrastive + (1 - p.contrastive_weight) * cross_entropy

        description = f"{self.name} ({n} groups of {k_a}+{k_p}+{k_n}+{k_n} per epoch)"
        fit(refined, batch_loss, n, p, context.seed, description, selection=context.selection)
        return refined

    def start(self, model: Classifier, context: RefinementContext) -> Classifier:
        if self.params.start == "original":
            return copy.deepcopy(model).to(context.device)
        if context.build_model is None:
            raise CrayonError(f"refiner {self.name!r} with start = 'new' trains a new model, and the refinement context cannot build one")
        return context.build_model().to(context.device)


@hookimpl
def crayon_refiners():
    return {"cnc": CorrectNContrast}
