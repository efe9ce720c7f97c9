"""The classifier interface every backbone returns."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Classifier(nn.Module, ABC):
    """An image classifier split at its last spatial feature map.

    ``forward(images) == head(feature_map(features(images)))`` where ``images`` are ``(B, 3, H, W)``
    in ``[0, 1]`` (normalisation happens inside), ``features`` returns ``(B, C, h, w)``, and ``head``
    maps that to ``(B, num_classes)`` logits. ``feature_map`` is an identity module whose output is the
    last spatial feature map: hook it (Captum's ``LayerGradCam`` does) to explain the model.
    """

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.feature_map = nn.Identity()

    @abstractmethod
    def forward_features(self, normalised: Tensor) -> Tensor:
        """``(B, 3, H, W)`` normalised images → ``(B, C, h, w)`` last spatial feature map."""

    @abstractmethod
    def head(self, features: Tensor) -> Tensor:
        """``(B, C, h, w)`` features → ``(B, num_classes)`` logits (pooling and classifier)."""

    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` → ``(B, C, h, w)`` feature map."""
        return self.feature_map(self.forward_features((images - self.mean) / self.std))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))
