"""``lc``: Logit Correction (Liu, Zhang, Sekhar, Wu, Singhal & Fernandez-Granda, "Avoiding Spurious
Correlations via Logit Correction", ICLR 2023, arXiv 2212.01433), an annotation-free baseline.

As the public code computes it (github.com/shengliu66/LC, ``learner.py::train_ours`` with the losses
and group mixup of its submodule amazon-science/lc-loss, ``loss.py`` and ``group_mixup.py``), one
training step on a minibatch ``B`` of images ``x_i`` with labels ``y_i`` trains two models at once:

- the **auxiliary (biased) model** ``b`` with the generalised cross-entropy of its logits ``u_i``,
  ``GCE_i = q · p_i^q · CE(u_i, y_i)`` with ``p_i = softmax(u_i)_{y_i}`` held constant (its gradient
  is q times that of ``(1 − p^q)/q``), q = 0.8, which makes it lean on what is easiest;
- its tempered, detached probabilities ``π_i = softmax(u_i / τ)`` (τ = 0.1) and predictions
  ``a_i = argmax u_i`` give the group prior. Per (class y, auxiliary prediction a) of the minibatch,
  ``M[y, a] = Σ_{i: y_i=y, a_i=a} π_i[y] / (n_{y,a} + 1e-4)`` (the code's ``avg_type = batch``; with
  ``prior_momentum`` α > 0, its ``mv_batch``: ``M ← α·M_prev + (1 − α)·M``), normalised over the
  classes: ``P[y, a] = M[y, a] / Σ_y' M[y', a]``, an estimate of ``P(y | a)``. Item ``i``'s
  correction vector is the column ``c_i = P[:, a_i]``;
- **group mixup** (``group_mixup.py``): every item of class k is mixed with a *minority* item of class
  k (label k, ``a ≠ k``) drawn uniformly with replacement, or, where the minibatch has none, with the
  class's items in a random order: ``x̃ = λ·x_i + (1 − λ)·x_j``, ``c̃ = λ·c_i + (1 − λ)·c_j``, label k,
  ``λ ~ U(1 − 2α_e, 1 − α_e)`` once per step, ``α_e = 0.5·exp(−5(1 − e/E)²)`` in epoch ``e``
  (0-based) of a ramp of ``E`` epochs (the code's ``sigmoid_rampup(epoch, curr_epoch)·0.5``); the
  ramp starts near no mixing (λ ≈ 1) and ends near λ ~ U(0, 0.5). Kept, as in the code (the paper's
  Algorithm 1); ``mixup = false`` leaves it out;
- the **main model** ``f`` with the logit-correction loss on the mixed items,
  ``LC_i = CE(f(x̃_i) + log(c̃_i^η + 1e-4), y_i)`` (η = 1), averaged over the minibatch.

The code sums ``LC.mean() + λ_dis·GCE.mean()`` and steps both models; the two terms share no weights
(the correction is detached), so here the auxiliary model takes its own step on ``GCE.mean()`` inside
the loss and the main model trains on ``LC.mean()`` in the shared loop. The auxiliary model is a new
model of the original's architecture (``context.build_model``: from the backbone's initial weights,
pretrained where the backbone is, as the code's ImageNet ResNet-50); it is discarded at the end.

Settings of the CRAYON repository (``misc/training_config.md``): **Waterbirds**: refine the Original
model with SGD, lr 5e-3, weight decay 1e-3, batch size 128, 50 epochs; the auxiliary ResNet-50 with
SGD, lr 5e-4; logit-correction weight η = 1, q = 0.8, temperature 0.1. **Biased CelebA**: SGD, lr
1e-3, weight decay 1e-3, batch size 64, 50 epochs; auxiliary lr 1e-4; η = 1, q = 0.8, τ = 0.1. (The
LC code's own Waterbirds command: lr 1e-3, weight decay 1e-4, ``curr_epoch`` 50, λ_dis = 2.)

Defaults differ, for the embedded benchmark (64 px, ``resnet10t`` from scratch, a few epochs): both
models train with Adam, as every trainer here does (the shared loop has no SGD); the main model with
``finetune``'s 3 epochs, lr 1e-4, weight decay 1e-4, batches of 64, so LC's two models cost about
what ``jtt``'s seven epochs do; the auxiliary model with lr 1e-3 (the ERM lr: it starts untrained
here, not from ImageNet weights) and no weight decay (the code's). With Adam, the weight λ_dis of the
auxiliary model's own loss changes nothing and is left out. The mixup ramp spans the run's epochs,
as CRAYON's 50 epochs span the code's ``curr_epoch = 50``. Where a column of ``M`` sums to zero (its
items' probabilities underflowed), it is divided by the smallest normal float instead of giving NaN.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.lff import generalized_cross_entropy  # LfF's GCE, which LC's code uses as is
from pydantic import Field, PositiveInt
from torch import Tensor

from crayon_plugins.api import Batch, Classifier, CrayonError, FineTuning, RefinementContext, hookimpl, log_term

CORRECTION_EPS = 1e-4
"""Added to ``prior^η`` before the log (``LogitCorrectionLoss``) and to the group counts of ``M``."""


def prior_matrix(probabilities: Tensor, labels: Tensor, predicted: Tensor, num_classes: int, previous: Tensor | None = None, momentum: float = 0.0) -> Tensor:
    """``(C, C)`` ``M[y, a]``: the mean over the minibatch's items of class ``y`` that the auxiliary
    model predicts as ``a`` of their (tempered) probability of ``y``, ``Σ π_i[y] / (n_{y,a} + 1e-4)``
    (zero where no item falls); with ``previous``, ``momentum · previous + (1 − momentum) · M``."""
    index = labels * num_classes + predicted
    own = probabilities.gather(1, labels[:, None]).squeeze(1)
    sums = torch.zeros(num_classes * num_classes, dtype=own.dtype, device=own.device).index_add_(0, index, own)
    counts = torch.zeros_like(sums).index_add_(0, index, torch.ones_like(own))
    batch = (sums / (counts + CORRECTION_EPS)).view(num_classes, num_classes)
    return batch if previous is None else momentum * previous + (1 - momentum) * batch


def correction_matrix(prior: Tensor) -> Tensor:
    """``P[y, a] = M[y, a] / Σ_y' M[y', a]``: each column normalised over the classes (a column
    summing to zero is divided by the smallest normal float, and stays zero)."""
    return prior / prior.sum(dim=0, keepdim=True).clamp_min(torch.finfo(prior.dtype).tiny)


def logit_correction_loss(logits: Tensor, labels: Tensor, prior: Tensor, eta: float) -> Tensor:
    """``(B,)`` ``CE(logits + log(prior^η + 1e-4), y)``, ``prior`` ``(B, C)`` each item's correction."""
    return F.cross_entropy(logits + torch.log(prior**eta + CORRECTION_EPS), labels, reduction="none")


def mixup_strength(epoch: int, ramp_epochs: int) -> float:
    """``α_e = 0.5 · exp(−5 (1 − e/E)²)`` for 0-based ``epoch`` e of a ramp of ``E`` epochs (held at
    0.5 after it); λ is drawn from ``U(1 − 2α, 1 − α)``."""
    phase = 1.0 - min(max(epoch, 0), ramp_epochs) / ramp_epochs
    return 0.5 * math.exp(-5.0 * phase * phase)


def group_mixup(images: Tensor, labels: Tensor, predicted: Tensor, corrections: Tensor, lam: float, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The code's ``group_mixUp``: ``(mixed images, mixed corrections, labels)``, items ordered by
    class. Each item of class k is mixed with a minority item of class k (``predicted ≠ k``) drawn
    uniformly with replacement, or, without one in the minibatch, with the class's items in a random
    order: ``λ·own + (1 − λ)·partner``. Both have label k, so the label needs no mixing."""
    labels_cpu, predicted_cpu = labels.cpu(), predicted.cpu()
    own, partners = [], []
    for k in labels_cpu.unique(sorted=True).tolist():
        members = (labels_cpu == k).nonzero().flatten()
        minority = ((labels_cpu == k) & (predicted_cpu != k)).nonzero().flatten()
        if len(minority):
            partner = minority[torch.randint(len(minority), (len(members),), generator=generator)]
        else:
            partner = members[torch.randperm(len(members), generator=generator)]
        own.append(members)
        partners.append(partner)
    i, j = torch.cat(own).to(images.device), torch.cat(partners).to(images.device)
    return lam * images[i] + (1 - lam) * images[j], lam * corrections[i] + (1 - lam) * corrections[j], labels[i]


@dataclass
class Auxiliary:
    """The auxiliary biased model and what the steps share: its optimiser, the running prior ``M``,
    the seeded generator of the mixup draws, and the step count (for the epoch of the ramp)."""

    model: Classifier
    optimiser: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    num_classes: int
    steps_per_epoch: int
    ramp_epochs: int
    prior: Tensor | None = None
    step: int = field(default=0)


class LogitCorrection(FineTuning):
    """Logit-corrected cross-entropy on group-mixed minibatches, the correction estimated per step
    from an auxiliary model trained alongside with generalised cross-entropy."""

    class Params(FineTuning.Params):
        epochs: int = Field(default=3, gt=0, description="epochs of the main model (and the auxiliary one alongside)")
        lr: float = Field(default=1e-4, gt=0, description="learning rate of the main model (Adam)")
        weight_decay: float = Field(default=1e-4, ge=0, description="weight decay of the main model")
        batch_size: PositiveInt = Field(default=64, description="minibatch size of both models")
        aux_lr: float = Field(default=1e-3, gt=0, description="learning rate of the auxiliary biased model (Adam, no weight decay)")
        q: float = Field(default=0.8, gt=0, le=1, description="GCE exponent q of the auxiliary model's loss")
        temperature: float = Field(default=0.1, gt=0, description="τ: the auxiliary model's softmax temperature in the group prior")
        eta: float = Field(default=1.0, ge=0, description="η: the logit-correction weight, logits + log(prior^η + 1e-4)")
        prior_momentum: float = Field(default=0.0, ge=0, lt=1, description="α of the prior's moving average over minibatches (0: each minibatch's own, the code's Waterbirds `batch`)")
        mixup: bool = Field(default=True, description="group mixup of each item with a minority item of its class")
        ramp_epochs: PositiveInt | None = Field(default=None, description="epochs over which the mixup strength ramps up (default: all of them)")
        start: Literal["original", "new"] = Field(default="original", description="the main model starts from the original model (CRAYON's) or a new one (the code's)")

    def start(self, model: Classifier, context: RefinementContext) -> Classifier:
        if self.params.start == "original":
            return copy.deepcopy(model)
        return self.new_model(context)

    def new_model(self, context: RefinementContext) -> Classifier:
        if context.build_model is None:
            raise CrayonError(f"refiner {self.name!r} trains an auxiliary model, and the refinement context cannot build a model")
        return context.build_model().to(context.device)

    def prepare(self, model: Classifier, context: RefinementContext) -> Auxiliary:
        p = self.params
        auxiliary = self.new_model(context)
        return Auxiliary(
            model=auxiliary,
            optimiser=torch.optim.Adam(auxiliary.parameters(), lr=p.aux_lr, weight_decay=0.0),
            scaler=torch.amp.GradScaler(context.device.type, enabled=p.amp == "fp16"),  # as the shared loop scales fp16
            generator=torch.Generator().manual_seed(context.seed),
            num_classes=len(context.train.class_names),
            steps_per_epoch=-(-len(context.train) // p.batch_size),
            ramp_epochs=p.ramp_epochs or p.epochs,
        )

    def corrections(self, logits: Tensor, labels: Tensor, state: Auxiliary) -> tuple[Tensor, Tensor]:
        """The auxiliary predictions ``a`` and each item's correction vector ``P[:, a_i]`` ``(B, C)``,
        updating the running prior."""
        probabilities = F.softmax(logits.detach().float() / self.params.temperature, dim=1)
        predicted = probabilities.argmax(dim=1)
        momentum = self.params.prior_momentum
        previous = None
        if momentum > 0:  # the code's moving average starts from zeros
            previous = state.prior if state.prior is not None else torch.zeros(state.num_classes, state.num_classes, device=logits.device)
        state.prior = prior_matrix(probabilities, labels, predicted, state.num_classes, previous, momentum)
        return predicted, correction_matrix(state.prior)[:, predicted].T

    def loss(self, model: Classifier, batch: Batch, prepared: Auxiliary) -> Tensor:
        p, state = self.params, prepared
        epoch = state.step // state.steps_per_epoch
        state.step += 1

        state.model.train()
        aux_logits = state.model(batch.images)
        gce = generalized_cross_entropy(aux_logits, batch.labels, p.q).mean()
        state.optimiser.zero_grad(set_to_none=True)
        state.scaler.scale(gce).backward()
        state.scaler.step(state.optimiser)
        state.scaler.update()
        log_term("auxiliary_gce", gce, "mean")

        predicted, corrections = self.corrections(aux_logits, batch.labels, state)
        images, labels = batch.images, batch.labels
        if p.mixup:
            alpha = mixup_strength(epoch, state.ramp_epochs)
            lam = float((1 - 2 * alpha) + alpha * torch.rand((), generator=state.generator))
            images, corrections, labels = group_mixup(images, labels, predicted, corrections, lam, state.generator)
        loss = logit_correction_loss(model(images), labels, corrections, p.eta).mean()
        log_term("logit_correction", loss, "mean")
        return loss


@hookimpl
def crayon_refiners():
    return {"lc": LogitCorrection}
