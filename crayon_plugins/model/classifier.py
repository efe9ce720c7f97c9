"""The classifier interface every backbone returns."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class ChannelMask(nn.Module):
    """Multiplies a ``(B, C, h, w)`` feature map by a per-channel ``mask`` (1 keeps, 0 prunes a neuron).

    The mask is a buffer, so it is saved and loaded with the model's ``state_dict`` and never trained.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(channels))

    def forward(self, features: Tensor) -> Tensor:
        return features * self.mask.view(1, -1, 1, 1)


class Classifier(nn.Module, ABC):
    """An image classifier split at its last spatial feature map.

    ``forward(images) == head(feature_map(features(images)))`` where ``images`` are ``(B, 3, H, W)``
    in ``[0, 1]`` (normalisation happens inside), ``features`` returns ``(B, C, h, w)``, and ``head``
    maps that to ``(B, num_classes)`` logits as ``classifier(pool(features))``. ``feature_map`` is
    the :class:`ChannelMask` of the ``C`` neurons (all kept until a refiner prunes some); its output
    is the last spatial feature map: hook it (Captum's ``LayerGradCam`` does) to explain the model.
    """

    classifier: nn.Module
    """The last layer: ``(B, D)`` pooled features → ``(B, num_classes)`` logits."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float], channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.feature_map = ChannelMask(channels)

    @abstractmethod
    def forward_features(self, normalised: Tensor) -> Tensor:
        """``(B, 3, H, W)`` normalised images → ``(B, C, h, w)`` last spatial feature map."""

    @abstractmethod
    def pool(self, features: Tensor) -> Tensor:
        """``(B, C, h, w)`` features → ``(B, D)`` penultimate features (the classifier's input)."""

    @property
    def neuron_mask(self) -> Tensor:
        """``(C,)`` 1 for each kept neuron (channel of the feature map), 0 for each pruned one."""
        return self.feature_map.mask

    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` → ``(B, C, h, w)`` feature map, pruned neurons zero."""
        return self.feature_map(self.forward_features((images - self.mean) / self.std))

    def head(self, features: Tensor) -> Tensor:
        """``(B, C, h, w)`` features → ``(B, num_classes)`` logits."""
        return self.classifier(self.pool(features))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))
