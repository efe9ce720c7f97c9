"""``jtt``: Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness without
Training Group Information", ICML 2021), the annotation-free baseline, as published.

Stage one trains an ERM model **from scratch** for only ``stage_one_epochs`` (the paper's early
stopping T); its training errors form the error set. Stage two trains a second model from scratch on
the training set with the error set upsampled ``upweight`` times (the public code appends the errors
``λ_up`` times to the training set, so an epoch has ``N + λ_up·|errors|`` draws). Both stages use this
refiner's optimisation options; the defaults are the run's ERM defaults, so stage two trains as long
as the original model did. The paper picks λ_up and T on validation worst-group accuracy (its
Waterbirds job uses λ_up = 100, CelebA 50; its sweep 20, 50, 100).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from crayon_plugins.api import Classifier, CrayonError, Optimisation, RefinementContext, Refiner, fit, hookimpl, log_term, predict, to_device


def upsampled_weights(errors: Tensor, upweight: float) -> Tensor:
    """Per item how often an epoch of the upsampled training set holds it: ``1 + λ_up`` for an
    error, 1 otherwise (float64)."""
    return torch.where(errors, 1.0 + upweight, 1.0).double()


class JustTrainTwice(Refiner):
    """Two models from scratch: an early-stopped ERM one that finds the errors, and one trained with
    the errors upsampled."""

    class Params(Optimisation):
        stage_one_epochs: PositiveInt = Field(default=1, description="T: epochs of the early-stopped ERM model")
        upweight: float = Field(default=20.0, ge=0, description="λ_up: extra copies of each error per epoch")

    def train(self, context: RefinementContext, epochs: int, weights: torch.Tensor | None, description: str, select: bool) -> Classifier:
        if context.build_model is None:
            raise CrayonError(f"refiner {self.name!r} trains from scratch, and the refinement context cannot build a model")
        model = context.build_model().to(context.device)
        train, device = context.train, context.device

        def batch_loss(indices: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
            loss = F.cross_entropy(model(to_device(images, device)), to_device(train.labels[indices], device))
            log_term("cross_entropy", loss, "mean")
            return loss

        n = len(train) if weights is None else round(float(weights.sum()))
        options = self.params.model_copy(update={"epochs": epochs})
        fit(model, batch_loss, n, options, context.seed, description, sample_weights=weights, selection=context.selection if select else None, images=train.images)
        return model

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        p = self.params
        first = self.train(context, p.stage_one_epochs, None, f"{self.name} stage one (ERM, {p.stage_one_epochs} epochs)", select=False)
        errors = predict(first, context.train.images, context.device).argmax(dim=1) != context.train.labels
        return self.train(context, p.epochs, upsampled_weights(errors, p.upweight), f"{self.name} stage two ({int(errors.sum())} errors upsampled)", select=True)


@hookimpl
def crayon_refiners():
    return {"jtt": JustTrainTwice}
