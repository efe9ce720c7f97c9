"""Your own images in torchvision's class-folder layout (``image-folder``).

Either ``root/train/<class>/…``, ``root/val/<class>/…`` and ``root/test/<class>/…``, or, without those
folders, ``root/<class>/…`` (images at any depth below a class folder; the extensions
torchvision's ImageFolder reads). The class names are the sorted class folder names, the same in
every split folder. Without split folders each class is split by the seeded shares ``split``
(train, val, test): a share ``split[2]`` of each class goes to test, a share ``split[1] / (split[0] +
split[1])`` of the rest to val (each rounded, at least one of a class of two or more), the others to
train; a missing ``val`` or ``test`` folder is taken out of ``train/`` the same way. Each split keeps
ImageFolder order.

There is no group attribute: the group metrics report per-class accuracy. With ``masks``, the object
masks are the PNGs of a folder mirroring the image tree (``masks/train/<class>/<stem>.png``, non-zero =
object). Item ids are the image paths below ``root``, with forward slashes.
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator

from crayon_plugins.api import DataError, FolderDataset, ImageSet, Item, hold_out, hookimpl, image_folder

SPLITS = ("train", "val", "test")


def carve(items: list[Item], shares: dict[str, float], seed: int) -> dict[str, list[Item]]:
    """``items`` split into the parts named by ``shares``, stratified by label: from the last part
    to the second, each takes its share of what the later ones left (:func:`hold_out`, seeded by
    ``seed`` and the part); the first part keeps the rest."""
    names, rest, parts = list(shares), list(items), {}
    for k in range(len(names) - 1, 0, -1):
        fraction = shares[names[k]] / sum(shares[n] for n in names[: k + 1])
        held = hold_out([item.label for item in rest], fraction, seed + k)
        parts[names[k]] = [item for item, out in zip(rest, held) if out]
        rest = [item for item, out in zip(rest, held) if not out]
    return {names[0]: rest, **{name: parts[name] for name in names[1:]}}


class ImageFolder(FolderDataset):
    """Class folders under ``root`` (split folders, or one tree split by ``split``): no group
    attribute, masks from the ``masks`` folder when it is set."""

    class Params(FolderDataset.Params):
        split: tuple[float, float, float] = Field(
            default=(0.7, 0.1, 0.2), description="shares of each class for train, val and test when root has no train / val / test folders (a missing val or test folder is taken out of train)"
        )
        split_seed: int = Field(default=0, description="seed of that split")
        masks: str | None = Field(default=None, description="object masks (PNG, non-zero = object) in a folder mirroring the image tree, relative to root: masks/SPLIT/CLASS/STEM.png for SPLIT/CLASS/STEM.jpg; default: no masks")

        @field_validator("split")
        @classmethod
        def _shares(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
            if min(value) <= 0 or not math.isclose(sum(value), 1, abs_tol=1e-6):
                raise ValueError(f"the train, val and test shares must be positive and add up to 1, got {list(value)}")
            return value

    def has_masks(self) -> bool:
        return self.params.masks is not None

    def has_groups(self) -> bool:
        return False

    def load(self, split: str) -> ImageSet:
        self.check_split(split)
        items = self._splits[split]
        if not items:
            raise DataError(f"dataset.root: {self.root}: no image falls in the {split} split (a class needs at least 3 images to be split three ways)", "dataset.root")
        return self.image_set(split, items, self._classes, (), masks=self.has_masks())

    @cached_property
    def _masks(self) -> Path | None:
        """The masks folder, or ``None`` without one."""
        if self.params.masks is None:
            return None
        folder = self.path(self.params.masks)
        if not folder.is_dir():
            raise DataError(f"dataset.masks: {folder} is not a folder", "dataset.masks")
        return folder

    @cached_property
    def _trees(self) -> dict[str, dict[str, list[Path]]]:
        """Split folder name (``""`` for root itself, without split folders) → class → image files."""
        present = [name for name in SPLITS if (self.root / name).is_dir()]
        if present and "train" not in present:
            raise DataError(f"dataset.root: {self.root} has {' and '.join(f'{name}/' for name in present)} but no train/ folder", "dataset.root")
        folders = {name: self.root / name for name in present} or {"": self.root}
        trees = {name: image_folder(folder, self._skipped(folder)) for name, folder in folders.items()}
        first, classes = next(iter(folders.values())), list(next(iter(trees.values())))
        if not classes:
            raise DataError(f"dataset.root: {first}: no class folder (expected {first}/<class>/<image>)", "dataset.root")
        for name, tree in trees.items():
            if list(tree) != classes:
                raise DataError(f"{folders[name]}: class folders {', '.join(tree) or 'none'} differ from {first}'s: {', '.join(classes)}")
            if empty := [c for c, files in tree.items() if not files]:
                raise DataError(f"{folders[name]}: class folder{'s' * (len(empty) > 1)} {', '.join(empty)} hold{'s' * (len(empty) == 1)} no image")
        return trees

    def _skipped(self, folder: Path) -> set[str]:
        """The sub-folders of ``folder`` that are no classes: hidden ones, and the one holding the
        masks folder (``masks = "ann/masks"`` under ``folder`` leaves ``ann`` out)."""
        skipped = {entry.name for entry in os.scandir(folder) if entry.name.startswith(".")}
        if self._masks is not None and self._masks.resolve() != folder.resolve() and self._masks.resolve().is_relative_to(folder.resolve()):
            skipped.add(self._masks.resolve().relative_to(folder.resolve()).parts[0])
        return skipped

    @cached_property
    def _classes(self) -> tuple[str, ...]:
        return tuple(next(iter(self._trees.values())))

    @cached_property
    def _splits(self) -> dict[str, list[Item]]:
        """Every split's items (each mask checked to exist)."""
        found = {name: self._items(tree) for name, tree in self._trees.items()}
        shares = dict(zip(SPLITS, self.params.split))
        missing = {name: share for name, share in shares.items() if name not in found}
        if len(missing) == len(SPLITS):  # no split folders: root's tree, split three ways
            return carve(found[""], shares, self.params.split_seed)
        if missing:
            found |= carve(found["train"], {"train": shares["train"], **missing}, self.params.split_seed)
        return found

    def _items(self, tree: dict[str, list[Path]]) -> list[Item]:
        items = []
        for label, (name, paths) in enumerate(tree.items()):
            for path in paths:
                item_id = path.relative_to(self.root).as_posix()
                items.append(Item(item_id, path, label, 0, self._mask(path, item_id), str(path.parent)))
        return items

    def _mask(self, image: Path, item_id: str) -> Path | None:
        """The mask file of ``image`` (``None`` without masks): an error naming both if it is missing."""
        if self._masks is None:
            return None
        mask = (self._masks / item_id).with_suffix(".png")
        if not mask.is_file():
            raise DataError(f"{mask}: the mask of {image} does not exist (masks mirror the image tree: <masks>/{Path(item_id).with_suffix('.png').as_posix()})")
        return mask


@hookimpl
def crayon_datasets():
    return {"image-folder": ImageFolder}
