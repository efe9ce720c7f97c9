"""Baselines guided by drawn maps, as the CRAYON paper compares with them.

- ``rrr``: Ross, Hughes & Doshi-Velez, "Right for the Right Reasons: Training Differentiable Models by
  Constraining their Explanations" (IJCAI 2017).
- ``gradmask``: Simpson, Dutil, Bengio & Cohen, "GradMask: Reduce Overfitting by Regularizing
  Saliency" (MIDL 2019).
- ``actdiff``: Viviano, Simpson, Dutil, Bengio & Cohen, "Saliency is a Possible Red Herring When
  Diagnosing Poor Generalization" (ICLR 2021).
- ``bounding-box``: Rao, Böhle, Parchami-Araghi & Schiele, "Studying How to Efficiently and Effectively
  Guide Models with Explanations" (ICCV 2023): their energy loss against the object's bounding box.

Each adds ``λ ×`` its term, per image with a drawing, to the cross-entropy (:class:`MapGuided`). The
gradient and activation terms are means over pixels (or features), so ``λ`` does not depend on the
image size, and ``λ`` = 1 starts them at the order of the cross-entropy of the original model on the
default benchmark (Ross et al.'s rule for choosing it): summed over the 12,288 values of a 64×64 image
they were 10³–10⁴ times larger and drove ``gradmask`` to a constant prediction.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.maps import EPS, bounding_boxes, grid_masks
from crayon_plugins.model import Classifier

from .gradcam import GradCam
from .map_guided import MapGuided


def input_gradients(model: Classifier, images: Tensor, output) -> tuple[Tensor, Tensor]:
    """``(logits, ∂ output(logits).sum() / ∂ images)`` with the graph kept."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(images)
        (grads,) = torch.autograd.grad(output(logits).sum(), images, create_graph=True)
    return logits, grads


class RightForTheRightReasons(MapGuided):
    """``rrr``: ``mean_pixels ((1 − region) · ∂ Σ_k log p_k / ∂x)²`` over the three channels.

    The paper penalises input gradients of the summed log-probabilities on the pixels annotated
    irrelevant; here every pixel outside the drawn region is irrelevant. Images are in ``[0, 1]``.
    """

    name = "rrr"

    def guidance(self, model: Classifier, images: Tensor, labels: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        logits, grads = input_gradients(model, images, lambda z: torch.log_softmax(z, dim=1))
        return logits, ((~regions)[:, None] * grads).pow(2).mean(dim=(1, 2, 3))


class GradMask(MapGuided):
    """``gradmask``: ``mean_pixels (1 − region) · |∂(z_y − max_{k≠y} z_k) / ∂x|`` over the channels.

    The paper (binary tasks) regularises the saliency of the logit difference outside the mask; for
    more classes we take the true logit minus the largest other, and the L1 norm as the paper does.
    """

    name = "gradmask"

    def guidance(self, model: Classifier, images: Tensor, labels: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        def margin(logits: Tensor) -> Tensor:
            true = logits.gather(1, labels[:, None])[:, 0]
            other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
            return true - other

        logits, grads = input_gradients(model, images, margin)
        return logits, ((~regions)[:, None] * grads.abs()).mean(dim=(1, 2, 3))


class ActDiff(MapGuided):
    """``actdiff``: ``‖f(x) − f(x_masked)‖² / D`` of the ``D`` penultimate features ``f``.

    ``x_masked`` replaces every pixel outside the drawn region with grey 0.5 (the benchmark's
    background mean; the paper fills with zeros in its normalised space, which is the same idea: remove
    what lies outside the object). Only the original image's cross-entropy is added.
    """

    name = "actdiff"

    def guidance(self, model: Classifier, images: Tensor, labels: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        features = model.features(images)
        masked = torch.where(regions[:, None], images, torch.full_like(images, 0.5))
        distance = (model.pool(features) - model.pool(model.features(masked))).pow(2).mean(dim=1)
        return model.head(features), distance


class BoundingBox(MapGuided):
    """``bounding-box``: the energy loss ``1 − Σ(E·B) / Σ(E)`` of the current Grad-CAM ``E`` against
    the feature-grid cells ``B`` that the drawing's bounding box touches (0 for an all-zero map's
    share, so such a map pays 1)."""

    needs = frozenset({"boxes"})
    name = "bounding-box"

    class Params(MapGuided.Params):
        lam: float = Field(default=10.0, ge=0, description="weight λ of the energy loss")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def guidance(self, model: Classifier, images: Tensor, labels: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        current, logits = self.gradcam.explain(model, images, labels)
        cells = grid_masks(bounding_boxes(regions), tuple(current.shape[-2:]))
        inside = (current * cells).sum(dim=(-2, -1)) / (current.sum(dim=(-2, -1)) + EPS)
        return logits, 1.0 - inside


@hookimpl
def crayon_refiners():
    return {"rrr": RightForTheRightReasons, "gradmask": GradMask, "actdiff": ActDiff, "bounding-box": BoundingBox}
