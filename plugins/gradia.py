"""``gradia``: attention alignment weighted by each image's reasonability quadrant.

GRADIA: Gao et al., "Aligning Eyes between Humans and Deep Neural Network through Interactive
Attention Alignment" (CSCW 2022). Each training image falls in a quadrant of the reasonability matrix
(is the original model's explanation reasonable? is its prediction accurate?), which sets the weights
of its prediction loss and its attention loss: the public code emphasises a term with weight ``a`` and
gives ``1 − a`` otherwise.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from crayon_plugins.components import RefinementContext
from crayon_plugins.data import Answer
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.maps import region_maps
from crayon_plugins.model import Classifier
from crayon_plugins.training import predict

from .gradcam import GradCam
from .map_guided import MapGuided


def quadrant_weights(reasonable: Tensor, accurate: Tensor, a: float) -> tuple[Tensor, Tensor]:
    """``(prediction weight, attention weight)`` per image, each ``(N,)``: reasonable-accurate
    ``(1−a, 1−a)``, unreasonable-accurate ``(1−a, a)``, reasonable-inaccurate ``(a, 1−a)``,
    unreasonable-inaccurate ``(a, a)``."""
    emphasis, rest = torch.tensor(a), torch.tensor(1.0 - a)
    return torch.where(accurate, rest, emphasis), torch.where(reasonable, rest, emphasis)


def attention_l1(current: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` mean absolute difference between ``(B, h, w)`` normalised maps."""
    return (current - target).abs().mean(dim=(-2, -1))


class Gradia(MapGuided):
    """``Σ w_pred·CE + λ·Σ w_att·L1(Grad-CAM, drawn map)`` per minibatch, weights by quadrant.

    The quadrant of a training image comes from the original model: reasonable unless the annotator
    answered *no* about its map (*maybe* and unannotated images count as reasonable: nobody objected),
    accurate when its prediction is right. The drawn region is pooled onto the feature grid (each
    cell's covered fraction, max-normalised). ``a`` = 0.75 and ``λ`` = 10 are our choices (the paper
    tunes them per dataset).
    """

    needs = frozenset({"map-answers", "attention-maps"})
    name = "gradia"

    class Params(MapGuided.Params):
        a: float = Field(default=0.75, ge=0.5, le=1, description="weight of an emphasised term")
        lam: float = Field(default=10.0, ge=0, description="weight λ of the attention loss")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def weights(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        accurate = predict(model, context.train.images, context.device).argmax(dim=1) == context.train.labels
        return quadrant_weights(context.map_answers != Answer.NO, accurate, self.params.a)

    def guidance(self, model: Classifier, images: Tensor, labels: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        current, logits = self.gradcam.explain(model, images, labels)
        return logits, attention_l1(current, region_maps(regions, tuple(current.shape[-2:])))


@hookimpl
def crayon_refiners():
    return {"gradia": Gradia}
