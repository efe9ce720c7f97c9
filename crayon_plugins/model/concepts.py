"""What a concept extractor finds for each neuron of the last feature map: its top training images
and the patch around each peak."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class NeuronConcepts:
    """What each neuron (channel ``c`` of the last feature map) responds to in the training split.

    Attributes:
        neuron_ids: ``C`` ids (``"neuron-0007"``), the items neuron annotations refer to.
        activations: ``(N, C)`` each training image's maximum activation of each neuron over the grid.
        top_images: ``(C, k)`` int64 indices into the training split of each neuron's ``k`` most
            activating images, strongest first.
        top_activations: ``(C, k)`` those images' maximum activations.
        cells: ``(C, k, 2)`` int64 feature-grid cell ``(row, column)`` of each arg-max.
        boxes: ``(C, k, 4)`` int64 receptive patch around each arg-max in image pixels: ``top, left,
            bottom, right`` (bottom and right exclusive), clipped to the image.
        grid: ``(h, w)`` of the feature map.
        image_size: ``(H, W)`` of the images.
    """

    neuron_ids: tuple[str, ...]
    activations: Tensor
    top_images: Tensor
    top_activations: Tensor
    cells: Tensor
    boxes: Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        c, k = self.top_images.shape
        if len(self.neuron_ids) != c or self.activations.shape[1] != c:
            raise ValueError(f"{len(self.neuron_ids)} neuron ids and activations {tuple(self.activations.shape)} for {c} neurons")
        expected = {"top_activations": (c, k), "cells": (c, k, 2), "boxes": (c, k, 4)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must be {shape}, got {tuple(getattr(self, name).shape)}")

    def __len__(self) -> int:
        return len(self.neuron_ids)

    @property
    def k(self) -> int:
        return self.top_images.shape[1]
