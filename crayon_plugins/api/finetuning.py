"""The base of loss-based refiners: they describe their loss, :class:`FineTuning` runs the loop.

``finetune`` is :class:`FineTuning` with the prediction loss alone, and every loss-based refiner
(``crayon-attention``, ``crayon-attention+pruning``, ``group-balanced``, GRADIA and the map-guided
baselines) runs the same loop with the same options and defaults. ``crayon-attention`` and
``group-balanced`` keep :meth:`FineTuning.prediction_loss`, the summed cross-entropy of CRAYON's
code, so ``finetune`` is exactly their training without the annotations; GRADIA and the map-guided
baselines average their cross-entropy over the minibatch, as their public code does, so for them
``finetune`` is the same loop at another loss scale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.api.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.training.loop import fit, log_term, to_device


@dataclass(frozen=True)
class Batch:
    """One minibatch: the ``indices`` of its items in the training split, their ``images`` and
    ``labels`` on the training device."""

    indices: Tensor
    images: Tensor
    labels: Tensor


class FineTuning(Refiner):
    """Fine-tune a copy of the whole model with Adam on :meth:`loss`, evaluating on validation after
    every epoch and keeping the epoch the run's selection rule picks.

    A subclass defines :meth:`loss`; it may override :meth:`prepare` (per-refinement work done once,
    such as the original model's maps or per-image weights), :meth:`sample_weights` (how often each
    item is drawn) and :meth:`start` (the model training starts from).
    """

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        weight_decay: float = Field(default=1e-4, ge=0)

    def prediction_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """Summed cross-entropy of the minibatch (CRAYON's code sums it; the attention terms are
        scaled to that), logged as ``cross_entropy``."""
        loss = F.cross_entropy(logits, batch.labels, reduction="sum")
        log_term("cross_entropy", loss, "sum")
        return loss

    def prepare(self, model: Classifier, context: RefinementContext) -> Any:
        """Computed once per refinement from the original ``model``; handed to every :meth:`loss`."""
        return None

    def loss(self, model: Classifier, batch: Batch, prepared: Any) -> Tensor:
        """The minibatch's loss (a scalar with a graph to ``model``'s weights)."""
        return self.prediction_loss(model(batch.images), batch)

    def sample_weights(self, model: Classifier, context: RefinementContext) -> Tensor | None:
        """Per training item, how often minibatches draw it (``None``: each once per epoch)."""
        return None

    def start(self, model: Classifier, context: RefinementContext) -> Classifier:
        """The model training starts from: a copy of the original (never modify the one given)."""
        return copy.deepcopy(model)

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        prepared = self.prepare(model, context)
        weights = self.sample_weights(model, context)
        refined = self.start(model, context).to(context.device)
        train, device = context.train, context.device

        def batch_loss(indices: Tensor, images: Tensor) -> Tensor:
            batch = Batch(indices, to_device(images, device), to_device(train.labels[indices], device))
            return self.loss(refined, batch, prepared)

        fit(refined, batch_loss, len(train), self.params, context.seed, f"refine {self.name}", sample_weights=weights, selection=context.selection, images=train.images)
        return refined


def rows(values: Tensor, batch: Batch) -> Tensor:
    """The minibatch's rows of a per-item tensor, on the batch's device."""
    return to_device(values[batch.indices.to(values.device)], batch.images.device)

