"""``gradia``: attention alignment weighted by each image's reasonability quadrant.

GRADIA: Gao et al., "Aligning Eyes between Humans and Deep Neural Network through Interactive
Attention Alignment" (CSCW 2022). Each training image falls in a quadrant of the reasonability matrix
(is the original model's explanation reasonable? is its prediction accurate?), which sets the weights
of its prediction loss and its attention loss: the public code emphasises a term with weight ``a`` and
gives ``1 − a`` otherwise.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.data import Answer
from crayon_plugins.errors import CrayonError
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.maps import region_maps
from crayon_plugins.model import Classifier
from crayon_plugins.training import fit, predict

from .gradcam import GradCam


def quadrant_weights(reasonable: Tensor, accurate: Tensor, a: float) -> tuple[Tensor, Tensor]:
    """``(prediction weight, attention weight)`` per image, each ``(N,)``: reasonable-accurate
    ``(1−a, 1−a)``, unreasonable-accurate ``(1−a, a)``, reasonable-inaccurate ``(a, 1−a)``,
    unreasonable-inaccurate ``(a, a)``."""
    emphasis, rest = torch.tensor(a), torch.tensor(1.0 - a)
    return torch.where(accurate, rest, emphasis), torch.where(reasonable, rest, emphasis)


def attention_l1(current: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` mean absolute difference between ``(B, h, w)`` normalised maps."""
    return (current - target).abs().mean(dim=(-2, -1))


class Gradia(Refiner):
    """Fine-tune the whole model with ``Σ w_pred·CE + λ·Σ w_att·L1(Grad-CAM, drawn map)`` per minibatch.

    The quadrant of a training image comes from the original model: reasonable unless the annotator
    answered *no* about its map (*maybe* and unannotated images count as reasonable: nobody objected),
    accurate when its prediction is right. The drawn region is pooled onto the feature grid (each
    cell's covered fraction, max-normalised); images without a drawing get no attention term. ``a``
    = 0.75 and ``λ`` are our choices (the paper tunes them per dataset); the sums are divided by the
    minibatch size.
    """

    needs = frozenset({"map-answers", "attention-maps"})

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        weight_decay: float = Field(default=1e-4, ge=0)
        a: float = Field(default=0.75, ge=0.5, le=1, description="weight of an emphasised term")
        lam: float = Field(default=10.0, ge=0, description="weight λ of the attention loss")

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        if context.attention is None or context.attention_drawn is None:
            raise CrayonError("refiner 'gradia' needs drawn attention maps, and the refinement context has none")
        train, device, p = context.train, context.device, self.params
        accurate = predict(model, train.images, device).argmax(dim=1) == train.labels
        w_pred, w_att = quadrant_weights(context.map_answers != Answer.NO, accurate, p.a)
        w_att = w_att * context.attention_drawn
        grid = tuple(context.original_maps.shape[-2:])
        targets = region_maps(context.attention, grid)
        refined = copy.deepcopy(model).to(device)
        gradcam = GradCam()

        def batch_loss(indices: Tensor) -> Tensor:
            images, labels = train.images[indices].to(device), train.labels[indices].to(device)
            current, logits = gradcam.explain(refined, images, labels)
            prediction = (w_pred[indices].to(device) * F.cross_entropy(logits, labels, reduction="none")).sum()
            attention = (w_att[indices].to(device) * attention_l1(current, targets[indices].to(device))).sum()
            return (prediction + p.lam * attention) / len(indices)

        fit(refined, batch_loss, len(train), p, context.seed, "refine gradia")
        return refined


@hookimpl
def crayon_refiners():
    return {"gradia": Gradia}
