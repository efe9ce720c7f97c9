"""``finetune``: plain cross-entropy fine-tuning, the control every annotation-based refiner must beat.

It trains exactly as ``crayon-attention`` does by default (epochs, learning rate, weight decay, batch
size) but without annotations, so a refiner's lift over ``original`` counts only as far as it exceeds
this one's: an original model that is not trained to convergence improves with more training alone.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field

from crayon_plugins.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.model import Classifier
from crayon_plugins.training import fit


class FineTune(Refiner):
    """Fine-tune the whole model with summed cross-entropy on the training split, ignoring annotations.

    Summed, like the energy loss's cross-entropy term, so that with weight decay the two refiners
    optimise the same objective when no answer adds an attention term.
    """

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        weight_decay: float = Field(default=1e-4, ge=0)

    def sample_weights(self, model: Classifier, context: RefinementContext) -> torch.Tensor | None:
        """Per training item, how often minibatches draw it (``None``: each once per epoch)."""
        return None

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        refined = copy.deepcopy(model).to(context.device)
        train, device = context.train, context.device

        def batch_loss(indices):
            logits = refined(train.images[indices].to(device))
            return F.cross_entropy(logits, train.labels[indices].to(device), reduction="sum")

        weights = self.sample_weights(model, context)
        fit(refined, batch_loss, len(train), self.params, context.seed, f"refine {type(self).__name__}", sample_weights=weights)
        return refined


@hookimpl
def crayon_refiners():
    return {"finetune": FineTune}
