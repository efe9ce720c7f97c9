"""A batched, differentiable Grad-CAM for training with losses on the maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from crayon_plugins.components import DifferentiableInterpreter
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.maps import normalise_maps
from crayon_plugins.model import Classifier


class GradCam(DifferentiableInterpreter):
    """Grad-CAM on the last feature map, for a whole batch in one backward pass.

    Maps are ``(B, h, w)`` on the model's feature grid, ``ReLU(Σ_c mean_hw(∂y_t/∂A_c)·A_c)``
    max-normalised to ``[0, 1]``. Differentiable: :meth:`explain` keeps the graph (``create_graph``)
    so a loss on the maps reaches the weights, and returns the logits it computed on the way.
    Each image's map depends only on that image as long as the model is in ``eval`` mode.
    """

    def explain(self, model: Classifier, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(maps, logits)`` with the graph kept, for use inside a training loss."""
        with torch.enable_grad():
            features = model.features(images)
            logits = model.head(features)
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, features, create_graph=True)
            cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1))
        return normalise_maps(cam), logits


@hookimpl
def crayon_interpreters():
    return {"gradcam": GradCam}
