"""Biased CelebA, the CRAYON authors' version: label ``Smiling``, spurious attribute black vs blond hair.

Each split is a whitespace-separated file with the header ``Filename 5_o_Clock_Shadow … Young`` (the
40 CelebA attributes) and one row per image (``162772.jpg 0 0 … 1``, values 0 / 1); the images are in
``img_align_celeba/``. The authors publish a training file (``…_1_100_train.csv``, the minority groups
at about 1 in 100) and a test file; with no ``val`` file, validation is a seeded, group-stratified
``val_fraction`` of the test file and the test split the rest (the training file stays whole: the
authors' answers are one per row of it). CelebA's own ``list_attr_celeba.txt`` layout (a count line,
a header without ``Filename``, values −1 / 1) is read too. Rows with neither or both of ``Black_Hair``
and ``Blond_Hair`` are left out and counted (:attr:`BiasedCelebA.dropped`). Item ids are the file
names; each split keeps its file's row order.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from crayon_plugins.api import DataError, FolderDataset, ImageSet, Item, hold_out, hookimpl, read_whitespace_table
from crayon_plugins.utils.progress import console

COLUMNS = ("Filename", "Smiling", "Black_Hair", "Blond_Hair")
VALUES = (-1, 0, 1)
"""Attribute values: 0 / 1 in the split files, −1 / 1 in ``list_attr_celeba.txt`` (−1 counts as 0)."""


class BiasedCelebA(FolderDataset):
    """Biased CelebA from ``root``: label not smiling / smiling, spurious attribute blond / black hair,
    no masks."""

    class Params(FolderDataset.Params):
        train: str = Field(default="biased_celeba_black_hair_1_100_train.csv", description="training split file, relative to root")
        val: str | None = Field(default=None, description="validation split file; default: val_fraction of the test file")
        test: str = Field(default="biased_celeba_black_hair_test.csv", description="test split file, relative to root")
        images: str = Field(default="img_align_celeba", description="the images' folder, relative to root")
        val_fraction: float = Field(default=0.1, gt=0, lt=1, description="share of each test group held out for validation when val is unset")
        val_seed: int = Field(default=0, description="seed of that choice")

    def __init__(self, params: FolderDataset.Params | None = None) -> None:
        super().__init__(params)
        self.dropped: dict[str, int] = {}
        """Split file → rows left out for neither or both hair colours (of the files read so far)."""
        self._tables: dict[str, list[Item]] = {}

    def has_masks(self) -> bool:
        return False

    def has_groups(self) -> bool:
        return True

    def load(self, split: str) -> ImageSet:
        self.check_split(split)
        p = self.params
        if split == "train" or p.val is not None:
            items = self._table(getattr(p, split))
        else:
            test = self._table(p.test)
            held = hold_out([2 * item.label + item.spurious for item in test], p.val_fraction, p.val_seed)
            items = [item for item, out in zip(test, held) if out == (split == "val")]
        return self.image_set(split, items, ("not smiling", "smiling"), ("blond", "black hair"))

    def _table(self, name: str) -> list[Item]:
        """The kept rows of the split file ``name`` (read once), each image checked to exist."""
        if name not in self._tables:
            path, images = self.path(name), self.path(self.params.images)
            items, dropped = [], 0
            for row in read_whitespace_table(path, COLUMNS, first="Filename"):
                smiling, black, blond = (max(0, row.integer(column, VALUES)) for column in ("Smiling", "Black_Hair", "Blond_Hair"))
                if black == blond:
                    dropped += 1
                    continue
                file = row.values["Filename"]
                items.append(Item(file, row.existing(images / Path(file)), smiling, black, source=row.where))
            if not items:
                raise DataError(f"{path}: no row has exactly one of Black_Hair and Blond_Hair")
            if dropped:
                console.print(f"{self.name}: left out {dropped} rows of {path} with neither or both of Black_Hair and Blond_Hair", markup=False, highlight=False, soft_wrap=True)
            self.dropped[name], self._tables[name] = dropped, items
        return self._tables[name]


@hookimpl
def crayon_datasets():
    return {"biased-celeba": BiasedCelebA}
