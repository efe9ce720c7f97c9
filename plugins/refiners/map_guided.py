"""The shared loss of refiners guided by drawn attention maps (GRADIA and the baselines)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Batch, Classifier, FineTuning, Need, RefinementContext, log_term, rows


@dataclass(frozen=True)
class Drawings:
    """Per training item: the prediction weight, the guidance weight (zero without a drawing) and
    the drawn region ``(N, H, W)``; and a generator for refiners that draw random numbers."""

    w_pred: Tensor
    w_guide: Tensor
    regions: Tensor
    generator: torch.Generator


class MapGuided(FineTuning):
    """Fine-tune the whole model with ``(Σ w_pred·CE + λ·Σ w_guide·guidance) / B`` per minibatch.

    A subclass defines :meth:`guidance`, the per-image term that measures how far the model is from
    looking at the drawn region; images without a drawing get no guidance term. :meth:`weights` gives
    every image weight 1 unless a subclass overrides it.
    """

    needs = frozenset({Need.ATTENTION_MAPS})

    class Params(FineTuning.Params):
        lam: float = Field(default=1.0, ge=0, description="weight λ of the guidance term")

    @abstractmethod
    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(logits (B, K), guidance (B,))`` for the minibatch and its drawn ``regions (B, H, W)``,
        with the graph kept so the guidance trains the model; ``generator`` seeds any random draw."""

    def weights(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        """``(prediction weight, guidance weight)`` per training image, each ``(N,)``."""
        return torch.ones(len(context.train)), torch.ones(len(context.train))

    def prepare(self, model: Classifier, context: RefinementContext) -> Drawings:
        drawn = context.require_drawings(self.name)
        w_pred, w_guide = self.weights(model, context)
        return Drawings(w_pred, w_guide * drawn.drawn, drawn.regions, torch.Generator().manual_seed(context.seed))

    def loss(self, model: Classifier, batch: Batch, prepared: Drawings) -> Tensor:
        logits, guidance = self.guidance(model, batch, rows(prepared.regions, batch), prepared.generator)
        prediction = (rows(prepared.w_pred, batch) * F.cross_entropy(logits, batch.labels, reduction="none")).sum()
        attention = self.params.lam * (rows(prepared.w_guide, batch) * guidance).sum()
        log_term("cross_entropy", prediction, "sum")
        log_term("attention", attention, "sum")
        return (prediction + attention) / len(batch.indices)
