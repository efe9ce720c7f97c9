"""Batched, differentiable Grad-CAMs for training with losses on the maps: CRAYON's and GRADIA's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from crayon_plugins.api.components import DifferentiableInterpreter
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.maps import normalise_maps


class GradCam(DifferentiableInterpreter):
    """Grad-CAM on the last feature map, for a whole batch in one backward pass.

    Maps are ``(B, h, w)`` on the model's feature grid, ``ReLU(Σ_c mean_hw(∂y_t/∂A_c)·A_c)``
    max-normalised to ``[0, 1]``. Differentiable: :meth:`explain` keeps the graph (``create_graph``)
    so a loss on the maps reaches the weights, and returns the logits it computed on the way.
    Each image's map depends only on that image as long as the model is in ``eval`` mode. Under
    mixed precision the gradients and activations are combined in float32.
    """

    def explain(self, model: Classifier, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(maps, logits)`` with the graph kept, for use inside a training loss."""
        with torch.enable_grad():
            features = model.features(images)
            logits = model.head(features)
            score = logits.float().gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, features, create_graph=True)
            cam = F.relu((grads.float().mean(dim=(2, 3), keepdim=True) * features.float()).sum(dim=1))
        return normalise_maps(cam), logits


class GradiaGradCam(DifferentiableInterpreter):
    """Grad-CAM as GRADIA's public code trains with it (``GRADIA.py``, ``get_attention_map``).

    ``Σ_c w_c·A_c`` with the channel weights ``w_c = mean_hw(∂y_t/∂A_c)`` taken as constants (a
    gradient hook, no ``create_graph``: the loss trains through the activations only), **no ReLU**,
    min–max normalised per image to ``[0, 1]`` (a constant map becomes zero).
    """

    def explain(self, model: Classifier, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(maps, logits)`` with the graph kept through the activations."""
        with torch.enable_grad():
            features = model.features(images)
            logits = model.head(features)
            (grads,) = torch.autograd.grad(logits.float().gather(1, targets[:, None]).sum(), features, retain_graph=True)
            cam = (grads.float().mean(dim=(2, 3), keepdim=True).detach() * features.float()).sum(dim=1)
        low = cam.amin(dim=(-2, -1), keepdim=True)
        span = cam.amax(dim=(-2, -1), keepdim=True) - low
        return (cam - low) / span.where(span > 0, 1.0), logits
