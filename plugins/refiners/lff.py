"""``lff``: Learning from Failure (Nam, Cha, Ahn, Lee & Shin, "Learning from Failure: Training
Debiased Classifier from Biased Classifier", NeurIPS 2020; public code alinlab/LfF), the
annotation-free baseline, as its public code computes it (``train.py``, ``module/loss.py``,
``util.py``).

Two models train at once on the same minibatches, **both from scratch** (``get_model`` twice): a
biased model ``f_B`` on the generalized cross-entropy, which amplifies its reliance on what is easy
to learn, and a debiased model ``f_D`` on cross-entropy re-weighted towards the items the biased
model fails on. Per minibatch, with ``p_y`` the softmax probability of the label:

- ``GCE(x, y) = CE(f_B(x), y) · q · p_y(f_B(x))^q`` with ``p_y^q`` a constant (detached), so its
  gradient is ``q · p_y^q`` times cross-entropy's (the code's ``GeneralizedCELoss``; the paper's
  ``(1 − p_y^q) / q`` has the gradient ``p_y^q · ∇CE``, without the factor ``q``), ``q`` = 0.7;
- per item an exponential moving average of each model's cross-entropy, updated with the minibatch's
  losses before use: ``L ← α·L + (1 − α)·ℓ``, the first visit setting ``L = ℓ`` (``EMA``, α = 0.7);
- each divided by the largest moving average among the training items of its class (items never
  visited count 0): ``L̂_B``, ``L̂_D``;
- the relative difficulty ``W(x) = L̂_B / (L̂_B + L̂_D + 1e-8)``, a constant;
- ``loss = mean_B GCE + mean_B W(x)·CE(f_D(x), y)``, one step for both models.

The debiased model is the result (with the epoch the run's selection rule picks).

The CRAYON paper's settings (poloclub/crayon, ``misc/training_config.md``): Waterbirds, SGD lr 5e-3,
weight decay 1e-4, batches of 128, 50 epochs, q = 0.7; Biased CelebA, "the Original model" with SGD
lr 5e-2, weight decay 1e-4, batches of 64, 50 epochs, q = 0.7. The defaults here are the run's ERM
defaults (Adam lr 1e-3, no weight decay, batches of 64, 6 epochs, as ``jtt``'s second stage): Adam at
lr 1e-3 without weight decay is also the public code's default optimiser. ``start = "original"``
starts the debiased model from a copy of the original model instead, as CRAYON's Biased CelebA row
reads.

Where this differs from the public code:

- the framework's loop trains with Adam (one optimiser over both models, which is the public code's
  two optimisers with the same settings); SGD is not offered;
- both models come from ``context.build_model``, seeded by the run's seed, so they start from the
  same weights (the public code draws two initialisations in a row); they part from the first step;
- the public code counts steps and keeps the last; here the loop counts epochs (a permutation each)
  and keeps the epoch the run's ``[selection] rule`` picks (``last`` by default);
- a class whose largest moving average is 0 is divided by 1 instead of 0 (the public code's weight is
  then NaN and it stops).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Classifier, CrayonError, Optimisation, RefinementContext, Refiner, fit, hookimpl, log_term, to_device


def generalized_cross_entropy(logits: Tensor, labels: Tensor, q: float) -> Tensor:
    """``(B,)`` ``CE · q · p_y^q`` with ``p_y^q`` detached (LfF's ``GeneralizedCELoss``)."""
    p_y = F.softmax(logits.float(), dim=1).gather(1, labels[:, None])[:, 0].detach()
    return F.cross_entropy(logits, labels, reduction="none") * (p_y**q * q)


class LossAverages:
    """Per training item the exponential moving average of a model's loss (LfF's ``EMA``):
    ``update`` sets ``L ← α·L + (1 − α·visited)·ℓ`` and marks the items visited."""

    def __init__(self, labels: Tensor, num_classes: int, alpha: float) -> None:
        self.labels, self.num_classes, self.alpha = labels, num_classes, alpha
        self.average = torch.zeros(len(labels), device=labels.device)
        self.visited = torch.zeros(len(labels), device=labels.device)

    def update(self, losses: Tensor, indices: Tensor) -> None:
        self.average[indices] = self.alpha * self.average[indices] + (1 - self.alpha * self.visited[indices]) * losses.detach().float()
        self.visited[indices] = 1.0

    def class_max(self) -> Tensor:
        """``(K,)`` the largest average among each class's items (0 for a class without items)."""
        return self.average.new_zeros(self.num_classes).scatter_reduce(0, self.labels, self.average, "amax")

    def normalised(self, indices: Tensor) -> Tensor:
        """The averages of ``indices`` divided by their class's largest (by 1 where that is 0)."""
        largest = self.class_max()[self.labels[indices]]
        return self.average[indices] / largest.where(largest > 0, 1.0)


def relative_difficulty(biased: Tensor, debiased: Tensor) -> Tensor:
    """``W = L̂_B / (L̂_B + L̂_D + 1e-8)`` of the class-normalised moving averages."""
    return biased / (biased + debiased + 1e-8)


class LearningFromFailure(Refiner):
    """Train a biased model on GCE and, on the same minibatches, a debiased model on cross-entropy
    weighted by the relative difficulty; return the debiased one."""

    class Params(Optimisation):
        epochs: int = Field(default=6, gt=0, description="epochs of both models (the run's ERM default; CRAYON: 50)")
        lr: float = Field(default=1e-3, gt=0, description="Adam's learning rate for both models (the public code's default; CRAYON: SGD at 5e-3 on Waterbirds)")
        weight_decay: float = Field(default=0.0, ge=0, description="Adam's weight decay (the public code's default; CRAYON: 1e-4)")
        batch_size: int = Field(default=64, gt=0, description="items per minibatch (CRAYON: 128 on Waterbirds, 64 on Biased CelebA)")
        q: float = Field(default=0.7, gt=0, le=1, description="the GCE exponent q (LfF and CRAYON: 0.7)")
        ema: float = Field(default=0.7, ge=0, lt=1, description="α of the per-item moving averages of the losses (the public code's 0.7)")
        start: Literal["scratch", "original"] = Field(
            default="scratch",
            description="where the debiased model starts: 'scratch', a new model as in the public code; 'original', a copy of the original model",
        )

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        if context.build_model is None:
            raise CrayonError(f"refiner {self.name!r} trains from scratch, and the refinement context cannot build a model")
        p, train, device = self.params, context.train, context.device
        biased = context.build_model().to(device)
        debiased = (copy.deepcopy(model) if p.start == "original" else context.build_model()).to(device)
        labels = train.labels.to(device)
        classes = len(train.class_names)
        averages_b, averages_d = LossAverages(labels, classes, p.ema), LossAverages(labels, classes, p.ema)

        def batch_loss(indices: Tensor, images: Tensor) -> Tensor:
            x, rows = to_device(images, device), indices.to(device)
            y = labels[rows]
            logits_b, logits_d = biased(x), debiased(x)
            ce_d = F.cross_entropy(logits_d, y, reduction="none")
            averages_b.update(F.cross_entropy(logits_b, y, reduction="none"), rows)
            averages_d.update(ce_d, rows)
            weight = relative_difficulty(averages_b.normalised(rows), averages_d.normalised(rows))
            loss_b = generalized_cross_entropy(logits_b, y, p.q).mean()
            loss_d = (ce_d * weight).mean()
            log_term("gce_biased", loss_b, "mean")
            log_term("weighted_ce_debiased", loss_d, "mean")
            log_term("weight", weight.mean(), "mean")
            return loss_b + loss_d

        biased.train()
        parameters = [*biased.parameters(), *debiased.parameters()]
        fit(debiased, batch_loss, len(train), p, context.seed, f"{self.name} (biased and debiased models)", parameters=parameters, selection=context.selection, images=train.images)
        biased.eval()
        return debiased


@hookimpl
def crayon_refiners():
    return {"lff": LearningFromFailure}
