"""``jtt``: Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness without
Training Group Information", ICML 2021), the annotation-free baseline.

Stage one is an ERM model whose training errors form the error set; stage two trains again with the
error set upsampled ``λ_up`` times. Two choices of ours, for a comparison on one original model: the
original model is the stage-one model, and stage two fine-tunes it (the paper retrains from scratch).
"""

from __future__ import annotations

import torch
from pydantic import Field

from crayon_plugins.components import RefinementContext
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.model import Classifier
from crayon_plugins.training import predict

from .finetune import FineTune


class JustTrainTwice(FineTune):
    """Fine-tune with the original model's training errors drawn ``upweight`` times as often."""

    class Params(FineTune.Params):
        upweight: float = Field(default=20.0, ge=1, description="λ_up: how much more often errors are drawn")

    def sample_weights(self, model: Classifier, context: RefinementContext) -> torch.Tensor:
        wrong = predict(model, context.train.images, context.device).argmax(dim=1) != context.train.labels
        return torch.where(wrong, self.params.upweight, 1.0).double()


@hookimpl
def crayon_refiners():
    return {"jtt": JustTrainTwice}
