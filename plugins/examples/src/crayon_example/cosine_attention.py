"""``cosine-attention``: yes / no answers as a cosine-similarity loss on Grad-CAM maps."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.data import Answer
from crayon_plugins.model import Classifier
from crayon_plugins.plugins.gradcam import GradCam
from crayon_plugins.training import fit


def cosine_attention_loss(current: Tensor, original: Tensor, answers: Tensor) -> Tensor:
    """``(B,)`` per image: ``cos(E, P)`` for *no*, ``1 − cos(E, P)`` for *yes*, 0 otherwise.

    Cosine similarity ignores the maps' scale, so unlike the energy loss it needs no normalisation;
    an all-zero map has similarity 0 (``F.cosine_similarity`` guards the norm).
    """
    similarity = F.cosine_similarity(current.flatten(1), original.flatten(1), dim=1, eps=1e-8)
    zero = torch.zeros_like(similarity)
    return torch.where(answers == Answer.NO, similarity, torch.where(answers == Answer.YES, 1 - similarity, zero))


class CosineAttention(Refiner):
    """Fine-tune the whole model with ``mean CE + λ · mean over annotated images of the cosine loss``.

    Where CRAYON-Attention's energy loss weighs *no* answers by how much attention stays on the
    original's region, this loss compares the maps' shapes: a *no* image is pushed toward a map
    orthogonal to the original's, a *yes* image toward the same map. *maybe* adds nothing.
    """

    needs = frozenset({"map-answers"})

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        lam: float = Field(default=1.0, ge=0, description="weight λ of the cosine loss")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        refined = copy.deepcopy(model).to(context.device)
        train, device = context.train, context.device
        original_maps = context.maps_for(self.gradcam, model)

        def batch_loss(indices: Tensor) -> Tensor:
            images, labels = train.images[indices].to(device), train.labels[indices].to(device)
            current, logits = self.gradcam.explain(refined, images, labels)
            answers = context.map_answers[indices].to(device)
            attention = cosine_attention_loss(current, original_maps[indices].to(device), answers)
            judged = ((answers == Answer.NO) | (answers == Answer.YES)).sum().clamp(min=1)
            return F.cross_entropy(logits, labels) + self.params.lam * attention.sum() / judged

        fit(refined, batch_loss, len(train), self.params, context.seed, "refine cosine-attention")
        return refined
