"""One split of a dataset: per-item metadata in memory, images and masks read on demand."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from crayon_plugins.data.items import Items, Loading, as_items


@dataclass(frozen=True)
class ImageSet:
    """One split of a dataset: per-item metadata in memory, images and masks read on demand.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in ``[0, 1]`` (models normalise internally), as
            :class:`~crayon_plugins.data.items.Items` (a tensor is wrapped): ``images[indices]`` stacks some,
            :meth:`~crayon_plugins.data.items.Items.batches` streams them.
        labels: ``(N,)`` int64 class indices.
        spurious: ``(N,)`` int64 spurious-attribute indices (Waterbirds' ``place``); all zero
            for a dataset without a group attribute.
        masks: ``(N, H, W)`` bool object masks, likewise, or ``None`` where the dataset has none.
        ids: ``N`` stable, unique item ids (annotations refer to items by id).
        class_names / spurious_names: display names; groups are ``label × spurious``. Empty
            ``spurious_names`` means the dataset has no group attribute (:attr:`has_groups`): then
            the groups are the classes, and the group metrics report per-class accuracy instead.
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
        if not self.spurious_names and bool(self.spurious.any()):
            raise ValueError("spurious must be all zero when spurious_names is empty (no group attribute)")

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
    def has_groups(self) -> bool:
        """Whether the split has a group attribute (non-empty :attr:`spurious_names`)."""
        return bool(self.spurious_names)

    @property
    def groups(self) -> Tensor:
        """``(N,)`` group index ``label * len(spurious_names) + spurious``; the label without a
        group attribute."""
        return self.labels * len(self.spurious_names) + self.spurious if self.has_groups else self.labels

    @property
    def group_names(self) -> tuple[str, ...]:
        """Names of the groups, indexed like :attr:`groups`: ``"label/attribute"``; the class names
        without a group attribute."""
        if not self.has_groups:
            return self.class_names
        return tuple(f"{c}/{s}" for c in self.class_names for s in self.spurious_names)

    def missing_groups(self) -> list[str]:
        """The names of the groups (classes, without a group attribute) with no item in this split."""
        counts = torch.bincount(self.groups, minlength=len(self.group_names)).tolist()
        return [name for name, count in zip(self.group_names, counts) if count == 0]

    def group_shares(self) -> Tensor:
        """``(G,)`` share of each group (class, without a group attribute) in this split (float64, sums to 1)."""
        counts = torch.bincount(self.groups, minlength=len(self.group_names)).double()
        return counts / counts.sum()

    def group_accuracies(self, predicted: Tensor) -> dict[str, float | None]:
        """Accuracy of ``predicted`` classes per group (class, without a group attribute), keyed by
        its name; ``None`` for one with no item in this split."""
        correct = (predicted == self.labels).double()
        groups = self.groups
        return {name: float(correct[groups == i].mean()) if (groups == i).any() else None for i, name in enumerate(self.group_names)}

    def accuracy(self, predicted: Tensor) -> float:
        """The share of items whose ``predicted`` class is their label (NaN for an empty split)."""
        return float((predicted == self.labels).double().mean()) if len(self) else math.nan

    def group_summary(self, predicted: Tensor) -> dict[str, float | int | dict[str, float | None]]:
        """``wga`` (worst-group) and ``mga`` (mean-group) accuracy of ``predicted`` over the groups
        this split has (NaN without any), each group's accuracy under ``groups``, and over how many
        groups they were taken (``groups_measured`` of ``groups_total``).

        Without a group attribute there is no WGA or MGA: ``class_accuracy`` (each class's accuracy,
        ``None`` where the split has none of it), ``worst_class_accuracy`` over the classes it has, and
        plain ``accuracy`` instead."""
        accuracies = self.group_accuracies(predicted)
        values = torch.tensor([v for v in accuracies.values() if v is not None], dtype=torch.float64)
        if not self.has_groups:
            worst = float(values.min()) if len(values) else math.nan
            return {"accuracy": self.accuracy(predicted), "worst_class_accuracy": worst, "class_accuracy": accuracies}
        wga, mga = (float(values.min()), float(values.mean())) if len(values) else (math.nan, math.nan)
        return {"wga": wga, "mga": mga, "groups": accuracies, "groups_measured": len(values), "groups_total": len(accuracies)}

    def in_distribution_accuracy(self, predicted: Tensor, train_shares: Tensor) -> float:
        """Σ_g (training share of g) × (accuracy on g) over the groups this split has, divided by their
        total share (the Group DRO convention; NaN when they have none). Without a group attribute,
        plain accuracy (the share of items predicted right)."""
        if not self.has_groups:
            return self.accuracy(predicted)
        accuracies = {i: v for i, v in enumerate(self.group_accuracies(predicted).values()) if v is not None}
        weight = sum(float(train_shares[i]) for i in accuracies)
        if weight == 0:
            return math.nan
        return sum(float(train_shares[i]) * accuracy for i, accuracy in accuracies.items()) / weight
