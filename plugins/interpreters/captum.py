"""Captum's attribution methods as interpreters (for display, judging and annotation).

``captum-gradcam`` wraps :class:`captum.attr.LayerGradCam` on the classifier's ``feature_map``;
the others are input-space methods whose maps are ``Σ_channels |attribution|`` at image resolution.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from pydantic import PositiveInt
from torch import Tensor

from crayon_plugins.api import Classifier, Interpreter, Params, hookimpl, normalise_maps


class CaptumGradCam(Interpreter):
    """Captum ``LayerGradCam`` on the last feature map: ``(B, h, w)`` maps on the feature grid,
    ReLU-ed and max-normalised to ``[0, 1]``. Not differentiable (maps are detached)."""

    def __call__(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        with torch.enable_grad():
            cams = LayerGradCam(model, model.feature_map).attribute(images, target=targets, relu_attributions=True)
        return normalise_maps(cams[:, 0].detach())


class CaptumSaliency(Interpreter):
    """Captum ``Saliency`` (absolute input gradients): ``(B, H, W)`` maps at image resolution."""

    method: ClassVar[type] = Saliency

    def attribute(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        return self.method(model).attribute(images, target=targets)

    def __call__(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        with torch.enable_grad():
            attributions = self.attribute(model, images.clone().requires_grad_(True), targets)
        return normalise_maps(attributions.detach().abs().sum(dim=1))


class CaptumIntegratedGradients(CaptumSaliency):
    """Captum ``IntegratedGradients`` from a black baseline: ``(B, H, W)`` maps at image resolution."""

    class Params(Params):
        steps: PositiveInt = 32

    method = IntegratedGradients

    def attribute(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        return self.method(model).attribute(images, target=targets, n_steps=self.params.steps)


@hookimpl
def crayon_interpreters():
    return {
        "captum-gradcam": CaptumGradCam,
        "captum-saliency": CaptumSaliency,
        "captum-integrated-gradients": CaptumIntegratedGradients,
    }
