"""``gradient-x-input``: input gradients times the input, a saliency map at image resolution."""

from __future__ import annotations

import torch
from torch import Tensor

from crayon_plugins.api import Classifier, Interpreter, normalise_maps


class GradientTimesInput(Interpreter):
    """``ReLU(Σ_channels x · ∂y_t/∂x)``: ``(B, H, W)`` maps at image resolution, max-normalised to
    ``[0, 1]`` (a black image's map is all zero). Not differentiable (maps are detached).

    Unlike Grad-CAM it is not tied to the feature grid, and unlike plain saliency it weighs each
    pixel's gradient by the pixel's value, so it credits what is in the image rather than what could be.
    """

    def __call__(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        images = images.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            scores = model(images).gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(scores, images)
        return normalise_maps((grads * images).sum(dim=1).relu().detach())
