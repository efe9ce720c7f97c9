"""What annotators are asked and what they answer: answer codes, the items to judge, and the answers
of a panel, one row per (item, annotator)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

import torch
from torch import Tensor

from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import Items, as_items
from crayon_plugins.model.concepts import NeuronConcepts


class Answer(IntEnum):
    """A judgement of a saliency map (does it look at the right thing?) or of a neuron (is its concept
    relevant?): *yes* / relevant, *no* / irrelevant, or *maybe*, an abstention."""

    NO = 0
    YES = 1
    MAYBE = 2

    @classmethod
    def named(cls, name: str) -> Answer | None:
        """The answer spelled ``name`` (``"yes"``, ``"no"``, ``"maybe"``, as answer files write it), or ``None``."""
        return cls.__members__.get(name.upper()) if isinstance(name, str) and name == name.lower() else None

    @property
    def label(self) -> str:
        """How answer files and pages spell it: ``"yes"``, ``"no"`` or ``"maybe"``."""
        return self.name.lower()


CODES = tuple(int(answer) for answer in Answer)
"""Every answer's code, in order: the categories agreement and aggregation count."""


class Question(StrEnum):
    """What an annotation source is asked: about saliency maps, neurons, or to draw where a model
    should look. Members equal their strings (``"maps"``)."""

    MAPS = "maps"
    NEURONS = "neurons"
    ATTENTION = "attention"


NOT_ANNOTATED = -1
"""Code used in per-item answer tensors for items nobody annotated."""


@dataclass(frozen=True)
class MapsToJudge:
    """What an annotation source sees when it judges saliency maps.

    Attributes:
        ids: item ids, one per map.
        images: ``(N, 3, H, W)`` the images the maps explain (:class:`~crayon_plugins.data.items.Items`).
        maps: ``(N, h, w)`` non-negative, max-normalised saliency maps (``h, w`` the model's grid).
        labels / spurious: ``(N,)`` ground truth and group metadata (oracles may use them).
        masks: ``(N, H, W)`` bool object masks (:class:`~crayon_plugins.data.items.Items`, read on
            demand), or ``None``.
        classes: ``(N,)`` the class each map explains (``None``: each image's label).
        class_names: the names of the classes, in the order of the model's outputs (``()``: unknown).
        key: the key of the model and maps judged, as an annotation task of them records it
            (``""``: unknown); sources of recorded answers check that the answers are about them.
    """

    ids: tuple[str, ...]
    images: Items
    maps: Tensor
    labels: Tensor
    spurious: Tensor
    masks: Items | None
    classes: Tensor | None = None
    class_names: tuple[str, ...] = ()
    key: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", as_items(self.images))
        if self.masks is not None:
            object.__setattr__(self, "masks", as_items(self.masks))

    @classmethod
    def of(cls, split: ImageSet, maps: Tensor, classes: Tensor | None = None, key: str = "") -> MapsToJudge:
        """``maps`` of the images of ``split`` (for ``classes``; default its labels), with its labels,
        group metadata, masks, class names and ``key``."""
        return cls(split.ids, split.images, maps, split.labels, split.spurious, split.masks, classes, tuple(split.class_names), key)

    @property
    def explained(self) -> Tensor:
        """``(N,)`` the class each map explains."""
        return self.labels if self.classes is None else self.classes


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
class NeuronsToJudge:
    """What an annotation source sees when it judges neurons: their concepts, the training split
    those concepts index (images, labels, group metadata, masks if any), and the key of the concepts
    judged (as for :class:`MapsToJudge`)."""

    concepts: NeuronConcepts
    train: ImageSet
    key: str = ""


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

    def tally(self, ids: tuple[str, ...], size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(votes (N, H, W) int, drawers (N,) int)`` in ``ids`` order: for each image, how many
        people's regions cover each pixel and how many people drew a non-empty region of it (one
        item may have several regions, one per person).

        Raises:
            ValueError: a region is about an item not in ``ids``.
        """
        index = {item: n for n, item in enumerate(ids)}
        if unknown := [item for item in self.item_ids if item not in index]:
            raise ValueError(f"a region is about item {unknown[0]!r}, which is not among the {len(ids)} items")
        drawn = self.regions.flatten(1).any(dim=1)
        where = torch.tensor([index[item] for item in self.item_ids], dtype=torch.int64)
        votes = torch.zeros(len(ids), *size, dtype=torch.int64).index_add_(0, where[drawn], self.regions[drawn].long())
        drawers = torch.zeros(len(ids), dtype=torch.int64).index_add_(0, where[drawn], torch.ones(int(drawn.sum()), dtype=torch.int64))
        return votes, drawers
