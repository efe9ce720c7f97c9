"""The shared training loop of refiners guided by drawn attention maps (GRADIA and the baselines)."""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.errors import CrayonError
from crayon_plugins.model import Classifier
from crayon_plugins.training import fit


class MapGuided(Refiner):
    """Fine-tune the whole model with ``(Σ w_pred·CE + λ·Σ w_guide·guidance) / B`` per minibatch.

    A subclass defines :meth:`guidance`, the per-image term that measures how far the model is from
    looking at the drawn region; images without a drawing get no guidance term. :meth:`weights` gives
    every image weight 1 unless a subclass (GRADIA) overrides it.
    """

    needs = frozenset({"attention-maps"})
    name: ClassVar[str]

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        weight_decay: float = Field(default=1e-4, ge=0)
        lam: float = Field(default=1.0, ge=0, description="weight λ of the guidance term")

    @abstractmethod
    def guidance(self, model: Classifier, images: Tensor, labels: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, K), guidance (B,))`` for images ``(B, 3, H, W)`` and drawn ``regions (B, H, W)``,
        with the graph kept so the guidance trains the model."""

    def weights(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        """``(prediction weight, guidance weight)`` per training image, each ``(N,)``."""
        return torch.ones(len(context.train)), torch.ones(len(context.train))

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        if context.attention is None or context.attention_drawn is None:
            raise CrayonError(f"refiner {self.name!r} needs drawn attention maps, and the refinement context has none")
        train, device, p = context.train, context.device, self.params
        w_pred, w_guide = self.weights(model, context)
        w_guide = w_guide * context.attention_drawn
        refined = copy.deepcopy(model).to(device)

        def batch_loss(indices: Tensor) -> Tensor:
            images, labels = train.images[indices].to(device), train.labels[indices].to(device)
            logits, guidance = self.guidance(refined, images, labels, context.attention[indices].to(device))
            prediction = (w_pred[indices].to(device) * F.cross_entropy(logits, labels, reduction="none")).sum()
            return (prediction + p.lam * (w_guide[indices].to(device) * guidance).sum()) / len(indices)

        fit(refined, batch_loss, len(train), p, context.seed, f"refine {self.name}")
        return refined
