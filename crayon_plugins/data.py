"""The data that flows between components: image sets, answers and annotations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import torch
from torch import Tensor

from .items import Items, Loading, as_items


@dataclass(frozen=True)
class ImageSet:
    """One split of a dataset: per-item metadata in memory, images and masks read on demand.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in ``[0, 1]`` (models normalise internally), as
            :class:`~crayon_plugins.items.Items` (a tensor is wrapped): ``images[indices]`` stacks some,
            :meth:`~crayon_plugins.items.Items.batches` streams them.
        labels: ``(N,)`` int64 class indices.
        spurious: ``(N,)`` int64 spurious-attribute indices (Waterbirds' ``place``).
        masks: ``(N, H, W)`` bool object masks, likewise, or ``None`` where the dataset has none.
        ids: ``N`` stable, unique item ids (annotations refer to items by id).
        class_names / spurious_names: display names; groups are ``label × spurious``.
        skipped: items the dataset left out because their files could not be read (reported).
    """

    images: Items
    labels: Tensor
    spurious: Tensor
    masks: Items | None
    ids: tuple[str, ...]
    class_names: tuple[str, ...]
    spurious_names: tuple[str, ...]
    skipped: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", as_items(self.images))
        if self.masks is not None:
            object.__setattr__(self, "masks", as_items(self.masks))
        n = len(self.ids)
        shape = self.images.shape
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {shape}")
        for name in ("images", "labels", "spurious", "masks"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} items but ids has {n}")
        if self.masks is not None and self.masks.shape[1:] != shape[2:]:
            raise ValueError(f"masks {self.masks.shape} do not match images {shape}")
        if len(set(self.ids)) != n:
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return tuple(self.images.shape[-2:])

    def with_loading(self, loading: Loading) -> ImageSet:
        """The split read with ``loading`` (workers, pinned memory)."""
        masks = None if self.masks is None else self.masks.with_loading(loading)
        return replace(self, images=self.images.with_loading(loading), masks=masks)

    @property
    def groups(self) -> Tensor:
        """``(N,)`` group index ``label * len(spurious_names) + spurious``."""
        return self.labels * len(self.spurious_names) + self.spurious

    @property
    def group_names(self) -> tuple[str, ...]:
        """Names of the groups, indexed like :attr:`groups`: ``"label/attribute"``."""
        return tuple(f"{c}/{s}" for c in self.class_names for s in self.spurious_names)

    def missing_groups(self) -> list[str]:
        """The names of the groups with no item in this split."""
        counts = torch.bincount(self.groups, minlength=len(self.group_names)).tolist()
        return [name for name, count in zip(self.group_names, counts) if count == 0]

    def group_shares(self) -> Tensor:
        """``(G,)`` share of each group in this split (float64, sums to 1)."""
        counts = torch.bincount(self.groups, minlength=len(self.group_names)).double()
        return counts / counts.sum()


class Answer(IntEnum):
    """A judgement of a saliency map (does it look at the right thing?) or of a neuron (is its concept
    relevant?): *yes* / relevant, *no* / irrelevant, or *maybe*, an abstention."""

    NO = 0
    YES = 1
    MAYBE = 2


NOT_ANNOTATED = -1
"""Code used in per-item answer tensors for items nobody annotated."""


@dataclass(frozen=True)
class MapsToJudge:
    """What an annotation source sees when it judges saliency maps.

    Attributes:
        ids: item ids, one per map.
        images: ``(N, 3, H, W)`` the images the maps explain (:class:`~crayon_plugins.items.Items`).
        maps: ``(N, h, w)`` non-negative, max-normalised saliency maps (``h, w`` the model's grid).
        labels / spurious: ``(N,)`` ground truth and group metadata (oracles may use them).
        masks: ``(N, H, W)`` bool object masks (:class:`~crayon_plugins.items.Items`, read on
            demand), or ``None``.
    """

    ids: tuple[str, ...]
    images: Items
    maps: Tensor
    labels: Tensor
    spurious: Tensor
    masks: Items | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", as_items(self.images))
        if self.masks is not None:
            object.__setattr__(self, "masks", as_items(self.masks))

    @classmethod
    def of(cls, split: ImageSet, maps: Tensor) -> MapsToJudge:
        """``maps`` of the images of ``split``, with its labels, group metadata and masks."""
        return cls(split.ids, split.images, maps, split.labels, split.spurious, split.masks)


def positions(item_ids: tuple[str, ...], ids: tuple[str, ...]) -> list[int]:
    """Where each of ``item_ids`` sits in ``ids``.

    Raises:
        ValueError: an item appears twice (several annotators: aggregate the panel first) or is not
            in ``ids``.
    """
    position = {item: i for i, item in enumerate(ids)}
    if len(set(item_ids)) != len(item_ids):
        repeated = next(item for item in item_ids if item_ids.count(item) > 1)
        raise ValueError(f"item {repeated!r} has several answers: aggregate the panel first")
    if unknown := [item for item in item_ids if item not in position]:
        raise ValueError(f"annotation for unknown item {unknown[0]!r}")
    return [position[item] for item in item_ids]


@dataclass(frozen=True)
class Annotations:
    """Answers about items (saliency maps, or neurons), one row per (item, annotator).

    Attributes:
        item_ids: the item (image id, or neuron id) each answer is about.
        answers: ``(M,)`` int64 :class:`Answer` codes.
        annotators: who gave each answer.
    """

    item_ids: tuple[str, ...]
    answers: Tensor
    annotators: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.item_ids) == len(self.answers) == len(self.annotators)):
            raise ValueError("item_ids, answers and annotators must have one entry per answer")
        if len(self.answers) and not bool(((self.answers >= 0) & (self.answers <= 2)).all()):
            raise ValueError("answers must be Answer codes 0 (no), 1 (yes) or 2 (maybe)")

    def counts(self) -> dict[str, int]:
        """Number of answers of each kind, keyed by ``"yes"``, ``"no"``, ``"maybe"``."""
        return {a.name.lower(): int((self.answers == a).sum()) for a in (Answer.YES, Answer.NO, Answer.MAYBE)}

    def aligned(self, ids: tuple[str, ...]) -> Tensor:
        """``(len(ids),)`` answer per item in ``ids`` order, :data:`NOT_ANNOTATED` where none.

        Raises:
            ValueError: an item has answers from several annotators (aggregate them first).
        """
        out = torch.full((len(ids),), NOT_ANNOTATED, dtype=torch.int64)
        out[positions(self.item_ids, ids)] = self.answers
        return out


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


@dataclass(frozen=True)
class NeuronsToJudge:
    """What an annotation source sees when it judges neurons: their concepts, and the training split
    those concepts index (images, labels, group metadata, masks if any)."""

    concepts: NeuronConcepts
    train: ImageSet


@dataclass(frozen=True)
class AttentionMaps:
    """Where annotators say a model should look: one drawn region per (item, annotator).

    Attributes:
        item_ids: the image each region is about.
        regions: ``(M, H, W)`` bool, ``True`` where the model should look (image resolution).
        annotators: who drew each region.
    """

    item_ids: tuple[str, ...]
    regions: Tensor
    annotators: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.item_ids) == len(self.regions) == len(self.annotators)):
            raise ValueError("item_ids, regions and annotators must have one entry per region")

    def aligned(self, ids: tuple[str, ...], size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(regions (N, H, W) bool, drawn (N,) bool)`` in ``ids`` order; items without a region (or
        with an empty one) are all ``False`` with ``drawn`` ``False``.

        Raises:
            ValueError: an item has several regions, or a region is about an unknown item.
        """
        regions = torch.zeros(len(ids), *size, dtype=torch.bool)
        regions[positions(self.item_ids, ids)] = self.regions
        return regions, regions.flatten(1).any(dim=1)
