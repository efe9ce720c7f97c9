"""Your own images listed in a table (``csv``): one row per image.

The comma-separated ``metadata`` file (under ``root``) has a header naming the columns ``path`` (the
image, relative to the table's folder or to ``images``), ``label`` and ``split`` (``train``, ``val`` or
``test``), and optionally ``group`` (a spurious or group attribute) and ``mask`` (an object mask image,
non-zero = object, relative to the table's folder or to ``masks``); other columns are ignored, and the
column names are options. Labels and group values may be names or integers: the class names are the
sorted distinct labels (numerically when every label is an integer), and likewise the group names.
Without a ``group`` column the dataset has no group attribute (the group metrics report per-class
accuracy); without a ``mask`` column it has no masks. Where a column is present, every row needs a
value. Item ids are the ``path`` values (with forward slashes); each split keeps the table's order.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field

from crayon_plugins.api import DataError, FolderDataset, ImageSet, Item, Row, hookimpl, read_csv

SPLITS = ("train", "val", "test")


def encode(values: list[str]) -> tuple[tuple[str, ...], list[int]]:
    """The sorted distinct ``values`` and each value's index among them: sorted numerically (and
    named as integers, ``"07"`` → ``"7"``) when every value is an integer."""
    try:
        keys: list[int] | list[str] = [int(v) for v in values]
    except ValueError:
        keys = values
    distinct = sorted(set(keys))
    position = {key: i for i, key in enumerate(distinct)}
    return tuple(map(str, distinct)), [position[key] for key in keys]


class CsvTable(FolderDataset):
    """Images named by the rows of a CSV table under ``root``, with their label, split and optional
    group attribute and mask."""

    class Params(FolderDataset.Params):
        metadata: str = Field(default="metadata.csv", description="the table, relative to root: a header, then one row per image")
        images: str | None = Field(default=None, description="the folder the path column is relative to, relative to root; default: the table's folder")
        masks: str | None = Field(default=None, description="the folder the mask column is relative to, relative to root; default: the table's folder")
        path_column: str = Field(default="path", description="the column naming each image")
        label_column: str = Field(default="label", description="the column of the labels: names or integers")
        split_column: str = Field(default="split", description="the column of the splits: train, val or test")
        group_column: str = Field(default="group", description="the column of the group (spurious) attribute, names or integers; without it the dataset has no group attribute")
        mask_column: str = Field(default="mask", description="the column naming each image's object mask (non-zero = object); without it the dataset has no masks")

    @property
    def table(self) -> Path:
        """The table's file."""
        return self.path(self.params.metadata)

    def has_masks(self) -> bool:
        return self._optional(self.params.mask_column, "mask_column")

    def has_groups(self) -> bool:
        return self._optional(self.params.group_column, "group_column")

    def load(self, split: str) -> ImageSet:
        self.check_split(split)
        items = [item for item, name in self._items if name == split]
        if not items:
            raise DataError(f"{self.table}: no row has {self.params.split_column} = {split}")
        return self.image_set(split, items, self._labels[0], self._group_values[0], masks=self.has_masks())

    @cached_property
    def _rows(self) -> list[Row]:
        p = self.params
        rows = read_csv(self.table, (p.path_column, p.label_column, p.split_column))
        if not rows:
            raise DataError(f"{self.table}: no row below the header")
        return rows

    def _optional(self, column: str, option: str) -> bool:
        """Whether the table has the optional ``column``; an error if the option ``option`` named
        it explicitly and it is absent."""
        header = self._rows[0].values
        if column not in header and option in self.params.model_fields_set:
            raise DataError(f"{self.table}: line 1: no column {column} (dataset.{option}; the header has {', '.join(header)})", f"dataset.{option}")
        return column in header

    def _values(self, column: str) -> list[str]:
        """Every row's value of ``column``, stripped: an error naming the first row where it is empty."""
        values = []
        for row in self._rows:
            if not (value := row.values[column].strip()):
                raise row.error(f"{column} is empty (where the table has a {column} column, every row needs a value)")
            values.append(value)
        return values

    @cached_property
    def _labels(self) -> tuple[tuple[str, ...], list[int]]:
        """The class names and each row's label."""
        return encode(self._values(self.params.label_column))

    @cached_property
    def _group_values(self) -> tuple[tuple[str, ...], list[int]]:
        """The group names and each row's group (none and zeros without a group column)."""
        return encode(self._values(self.params.group_column)) if self.has_groups() else ((), [0] * len(self._rows))

    @cached_property
    def _items(self) -> list[tuple[Item, str]]:
        """Every row as ``(item, split)``, each file checked to exist."""
        p, base = self.params, self.table.parent
        images = base if p.images is None else self.path(p.images)
        masks = base if p.masks is None else self.path(p.masks)
        labels, groups = self._labels[1], self._group_values[1]
        mask_files = self._values(p.mask_column) if self.has_masks() else [None] * len(self._rows)
        found = []
        for row, label, group, mask in zip(self._rows, labels, groups, mask_files):
            split = row.values[p.split_column].strip().lower()
            if split not in SPLITS:
                raise row.error(f"{p.split_column} must be one of {', '.join(SPLITS)}, got {row.values[p.split_column].strip()!r}")
            if not (name := row.values[p.path_column].strip().replace("\\", "/")):
                raise row.error(f"{p.path_column} is empty")
            mask_path = None if mask is None else row.existing(masks / mask.replace("\\", "/"), "mask")
            found.append((Item(name, row.existing(images / name), label, group, mask_path, row.where), split))
        return found


@hookimpl
def crayon_datasets():
    return {"csv": CsvTable}
