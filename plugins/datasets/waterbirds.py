"""Waterbirds (Sagawa et al., 2020): ``metadata.csv`` and the images it names.

``metadata.csv`` has the columns ``img_id, img_filename, y, split, place`` (others, such as
``place_filename``, are ignored): ``y`` is the label (0 landbird, 1 waterbird), ``place`` the spurious
attribute (0 land, 1 water), ``split`` 0 / 1 / 2 for train / val / test, and ``img_filename`` the image
under ``images`` (species folder included, ``001.Black_footed_Albatross/….jpg``). Two layouts are
read: the release's, with the species folders in ``root`` itself, and the CRAYON authors', with them
in ``root/images/`` beside ``metadata.csv`` and ``segmentations/``: where ``images`` is left at its
default and the first row's image is not under ``root`` but under ``root/images``, that folder is
used. The object masks are the CUB-200 segmentations, ``segmentations/<species folder>/<image>.png``
(non-zero = bird), used when that folder exists. Item ids are the ``img_filename`` s; each split keeps
the file's row order (the CRAYON authors' answers follow it).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field

from crayon_plugins.api import DataError, FolderDataset, ImageSet, Item, Row, hookimpl, read_csv

COLUMNS = ("img_id", "img_filename", "y", "split", "place")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
AUTHORS_IMAGES = "images"
"""Where the CRAYON authors' layout keeps the species folders, below ``root``."""


class Waterbirds(FolderDataset):
    """Waterbirds from ``root``: label landbird / waterbird, spurious attribute land / water, masks
    from the CUB segmentations when present."""

    class Params(FolderDataset.Params):
        metadata: str = Field(default="metadata.csv", description="the metadata table, relative to root")
        images: str = Field(default=".", description="the folder holding the species folders, relative to root; by default root, or root/images where the first row's image is there")
        segmentations: str = Field(default="segmentations", description="the CUB segmentations, relative to root; masks only where it exists")

    def has_masks(self) -> bool:
        return self._segmentations is not None

    def has_groups(self) -> bool:
        return True

    def load(self, split: str) -> ImageSet:
        self.check_split(split)
        items = [item for item, code in self._items if code == SPLIT_CODES[split]]
        if not items:
            raise DataError(f"{self.path(self.params.metadata)}: no row has split = {SPLIT_CODES[split]} ({split})")
        return self.image_set(split, items, ("landbird", "waterbird"), ("land", "water"), masks=self._segmentations is not None)

    @cached_property
    def _segmentations(self) -> Path | None:
        """The segmentations folder, or ``None`` where the default one is absent."""
        folder = self.path(self.params.segmentations)
        if folder.is_dir():
            return folder
        if "segmentations" in self.params.model_fields_set:
            raise DataError(f"dataset.segmentations: {folder} is not a folder", "dataset.segmentations")
        return None

    @cached_property
    def _rows(self) -> list[Row]:
        return read_csv(self.path(self.params.metadata), COLUMNS)

    @cached_property
    def _images(self) -> Path:
        """The folder holding the species folders: ``images``; left at its default, ``root/images``
        where the first row's image is not under root but there (the CRAYON authors' layout)."""
        folder = self.path(self.params.images)
        if "images" in self.params.model_fields_set or not self._rows:
            return folder
        first = self._rows[0].values["img_filename"].strip()
        authors = self.path(AUTHORS_IMAGES)
        return authors if not (folder / first).is_file() and (authors / first).is_file() else folder

    @cached_property
    def _items(self) -> list[tuple[Item, int]]:
        """Every row of the metadata as ``(item, split code)``, each file checked to exist."""
        images, masks = self._images, self._segmentations
        found = []
        for row in self._rows:
            code = row.integer("split", SPLIT_CODES.values())
            name = row.values["img_filename"].strip()
            image = images / name
            if not image.is_file():
                raise row.error(f'image {image} does not exist; set images = "…" under [dataset] if the species folders are elsewhere')
            mask = None if masks is None else row.existing((masks / name).with_suffix(".png"), "segmentation")
            found.append((Item(name, image, row.integer("y", (0, 1)), row.integer("place", (0, 1)), mask, row.where), code))
        return found


@hookimpl
def crayon_datasets():
    return {"waterbirds": Waterbirds}
