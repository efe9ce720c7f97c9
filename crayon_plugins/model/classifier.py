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

    def network_state_dict(self) -> dict[str, Tensor]:
        """The weights under the wrapped network's own names, as ``torch.save(network.state_dict())``
        would name them, so they load into a plain timm or torchvision model.

        A classifier that wraps its network as ``body`` gives ``body``'s keys without the prefix; a
        head outside ``body`` (a network cut after a feature stage) keeps its ``classifier.*`` keys.
        The normalisation and the neuron mask are not weights of the network: a model card holds them.
        """
        body, head = self._body_and_head()
        state = {k: v for k, v in self.state_dict().items() if k not in OWN_BUFFERS}
        if body is None:
            return state
        return {k.removeprefix("body."): v for k, v in state.items() if not (head is not None and k.startswith("classifier."))}

    def own_names(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """``state``, named as :meth:`network_state_dict` names it, under this classifier's names."""
        body, head = self._body_and_head()
        if body is None:
            return dict(state)
        mapped = {}
        for key, value in state.items():
            mapped[key if head is None and key.startswith("classifier.") else f"body.{key}"] = value
            if head is not None and key.startswith(f"{head}."):
                mapped[f"classifier.{key[len(head) + 1:]}"] = value
        return mapped

    def load_network_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load weights named as :meth:`network_state_dict` names them; every key must fit."""
        missing, unexpected = self.load_state_dict(self.own_names(state), strict=False)
        if unexpected or (missing := [k for k in missing if k not in OWN_BUFFERS]):
            raise KeyError(f"weights do not fit the network: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def _body_and_head(self) -> tuple[nn.Module | None, str | None]:
        """The wrapped network (``None`` when the classifier is the network itself) and the name of
        :attr:`classifier` inside it (``None`` when the head is outside it)."""
        body = getattr(self, "body", None)
        if not isinstance(body, nn.Module):
            return None, None
        return body, next((name for name, module in body.named_modules() if module is self.classifier and name), None)


OWN_BUFFERS = ("mean", "std", "feature_map.mask")
"""A :class:`Classifier`'s own buffers, which are not weights of the network it wraps."""
