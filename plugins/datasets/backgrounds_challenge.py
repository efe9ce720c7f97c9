"""The Backgrounds Challenge (Xiao et al., 2021): ImageNet-9 and its background variants.

``original/train/<class>/`` and ``original/val/<class>/`` hold the ImageNet-9 images; ``mixed_same/val``,
``mixed_rand/val`` and ``only_fg/val`` the same validation images with the foreground on the background
of another image of the same class, of a random class, and on black. The 9 class folders (``00_dog``,
``01_bird``, …) are the classes in sorted order, named without their number; images are listed as
torchvision's ImageFolder lists them (the CRAYON authors' answers follow that order).

Splits: ``train`` is ``original/train``, whole; ``val`` a seeded ``val_fraction`` of each class of
``original/val`` and ``test`` the rest of it. The evaluation splits ``mixed_same``, ``mixed_rand`` and
``only_fg`` are their folders, whole (metrics ``mr`` and ``bg-gap``). There is no spurious-attribute
metadata: every item has the one attribute ``any``, so groups are classes. Item ids are the paths
below ``root``. No masks.
"""

from __future__ import annotations

from pydantic import Field

from crayon_plugins.api import DataError, FolderDataset, ImageSet, Item, hold_out, hookimpl, image_folder

FOLDERS = {
    "train": "original/train",
    "val": "original/val",
    "test": "original/val",
    "mixed_same": "mixed_same/val",
    "mixed_rand": "mixed_rand/val",
    "only_fg": "only_fg/val",
}


def class_name(folder: str) -> str:
    """``"02_wheeled vehicle"`` → ``"wheeled vehicle"``."""
    number, _, name = folder.partition("_")
    return name if number.isdigit() and name else folder


class BackgroundsChallenge(FolderDataset):
    """ImageNet-9 from ``root``: 9 classes, one spurious value, evaluation splits with swapped
    backgrounds."""

    evaluation_splits = ("mixed_same", "mixed_rand", "only_fg")

    class Params(FolderDataset.Params):
        val_fraction: float = Field(default=0.1, gt=0, lt=1, description="share of each class of original/val held out for validation")
        val_seed: int = Field(default=0, description="seed of that choice")

    def has_masks(self) -> bool:
        return False

    def has_groups(self) -> bool:
        return True  # the one attribute ``any``: groups are the classes

    def load(self, split: str) -> ImageSet:
        self.check_split(split)
        train = image_folder(self.path(FOLDERS["train"]))
        folder = self.path(FOLDERS[split])
        found = train if split == "train" else image_folder(folder)
        if list(found) != list(train):
            raise DataError(f"{folder}: class folders {', '.join(found) or 'none'} differ from {self.path(FOLDERS['train'])}'s: {', '.join(train)}")
        if not any(found.values()):
            raise DataError(f"{folder}: no image in its class folders")
        items = [
            Item(path.relative_to(self.root).as_posix(), path, label, 0, source=str(folder))
            for label, paths in enumerate(found.values())
            for path in paths
        ]
        if split in ("val", "test"):
            held = hold_out([item.label for item in items], self.params.val_fraction, self.params.val_seed)
            items = [item for item, out in zip(items, held) if out == (split == "val")]
        return self.image_set(split, items, tuple(map(class_name, train)), ("any",))


@hookimpl
def crayon_datasets():
    return {"backgrounds-challenge": BackgroundsChallenge}
