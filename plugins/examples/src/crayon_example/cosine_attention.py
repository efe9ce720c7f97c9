"""``cosine-attention``: yes / no answers as a cosine-similarity loss on Grad-CAM maps."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Answer, Batch, Classifier, FineTuning, GradCam, Need, RefinementContext, rows


def cosine_attention_loss(current: Tensor, original: Tensor, answers: Tensor) -> Tensor:
    """``(B,)`` per image: ``cos(E, P)`` for *no*, ``1 − cos(E, P)`` for *yes*, 0 otherwise.

    Cosine similarity ignores the maps' scale, so unlike the energy loss it needs no normalisation;
    an all-zero map has similarity 0 (``F.cosine_similarity`` guards the norm).
    """
    similarity = F.cosine_similarity(current.flatten(1), original.flatten(1), dim=1, eps=1e-8)
    zero = similarity.new_zeros(())
    return similarity.where(answers == Answer.NO, (1 - similarity).where(answers == Answer.YES, zero))


class CosineAttention(FineTuning):
    """Fine-tune the whole model with ``mean CE + λ · mean over annotated images of the cosine loss``.

    Where CRAYON-Attention's energy loss weighs *no* answers by how much attention stays on the
    original's region, this loss compares the maps' shapes: a *no* image is pushed toward a map
    orthogonal to the original's, a *yes* image toward the same map. *maybe* adds nothing. The loop,
    validation and model selection are :class:`~crayon_plugins.api.finetuning.FineTuning`'s.
    """

    needs = frozenset({Need.MAP_ANSWERS})

    class Params(FineTuning.Params):
        lam: float = Field(default=1.0, ge=0, description="weight λ of the cosine loss")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def prepare(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        """Once per refinement: the original model's maps and the answers, per training item."""
        return context.maps_for(self.gradcam, model), context.map_answers

    def loss(self, model: Classifier, batch: Batch, prepared: tuple[Tensor, Tensor]) -> Tensor:
        original_maps, answers = (rows(values, batch) for values in prepared)
        current, logits = self.gradcam.explain(model, batch.images, batch.labels)
        attention = cosine_attention_loss(current, original_maps, answers)
        judged = ((answers == Answer.NO) | (answers == Answer.YES)).sum().clamp(min=1)
        return F.cross_entropy(logits, batch.labels) + self.params.lam * attention.sum() / judged
