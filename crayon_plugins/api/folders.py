"""A base for datasets read from folders on disk, and the helpers their loaders share.

:class:`FolderDataset` declares the options every on-disk dataset has (``root``, the CRAYON code's
transforms, the unreadable-image policy) and turns the :class:`Item` list a loader found into an
:class:`~crayon_plugins.data.image_set.ImageSet` whose images and masks are decoded lazily.
:func:`read_csv` and :func:`read_whitespace_table` read metadata tables into :class:`Row` s, which
convert their own values and name their file and line in every error; :func:`image_folder` lists an
ImageFolder-style tree in torchvision's order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field, model_validator

from crayon_plugins.api import components
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import FileImages, FileMasks, readable
from crayon_plugins.errors import DataError
from crayon_plugins.utils.files import TASK_MARK
from crayon_plugins.utils.progress import progress_bar, warn

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""What :func:`image_folder` counts as an image (torchvision's ImageFolder's list, any case)."""

SKIP_HINT = "; set skip_unreadable = true under [dataset] to leave unreadable images out"


@dataclass(frozen=True)
class Item:
    """One item a loader found: stable ``id``, image file, label, spurious attribute, mask file (or
    ``None``), and ``source``, where it was listed (``"metadata.csv: line 7"``), for errors."""

    id: str
    image: Path
    label: int
    spurious: int
    mask: Path | None = None
    source: str = ""


@dataclass(frozen=True)
class Row:
    """One data row of a table: its values by column, and the file and line it came from."""

    file: Path
    line: int
    values: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.file}: line {self.line}"

    def error(self, message: str) -> DataError:
        """A :class:`DataError` about this row."""
        return DataError(f"{self.where}: {message}")

    def integer(self, column: str, allowed: Collection[int]) -> int:
        """The value of ``column`` as an integer in ``allowed``."""
        text = self.values[column].strip()
        try:
            value = int(text)
        except ValueError:
            raise self.error(f"{column} must be an integer, got {text!r}") from None
        if value not in allowed:
            raise self.error(f"{column} must be one of {', '.join(map(str, sorted(allowed)))}, got {value}")
        return value

    def existing(self, path: Path, what: str = "image") -> Path:
        """``path``, which this row names: an error naming it unless it is a file."""
        if not path.is_file():
            raise self.error(f"{what} {path} does not exist")
        return path


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a UTF-8 text file ({error})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror or error})") from None


def _require_columns(path: Path, line: int, header: Sequence[str], columns: Collection[str]) -> None:
    if missing := [c for c in columns if c not in header]:
        raise DataError(f"{path}: line {line}: missing column{'s' * (len(missing) > 1)} {', '.join(missing)} (the header has {', '.join(header)})")


def read_csv(path: Path, columns: Collection[str]) -> list[Row]:
    """The rows of the comma-separated file ``path``, whose header must name ``columns`` (others are
    kept too); a row with another number of fields than the header is an error naming its line."""
    reader = csv.reader(io.StringIO(_text(path)))
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DataError(f"{path}: the file is empty (expected a header naming {', '.join(columns)})")
        _require_columns(path, 1, header, columns)
        rows = []
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: {len(fields)} fields, the header has {len(header)}")
            rows.append(Row(path, reader.line_num, dict(zip(header, fields))))
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    return rows


def read_whitespace_table(path: Path, columns: Collection[str], first: str) -> list[Row]:
    """The rows of the whitespace-separated table ``path``: a header, then one row per line.

    Also reads the layout of CelebA's ``list_attr_celeba.txt``: a line with the number of rows before
    the header, and a header that names every column but the ``first`` (named ``first`` here).
    """
    lines = [(n, line.split()) for n, line in enumerate(_text(path).splitlines(), 1) if line.strip()]
    count = None
    if lines and len(lines[0][1]) == 1 and lines[0][1][0].isdigit():
        count, lines = int(lines[0][1][0]), lines[1:]
    if not lines:
        raise DataError(f"{path}: the file has no header (expected one naming {', '.join(columns)})")
    (line, header), body = lines[0], lines[1:]
    if body and len(body[0][1]) == len(header) + 1 and first not in header:
        header = [first, *header]
    _require_columns(path, line, header, columns)
    rows = []
    for n, fields in body:
        if len(fields) != len(header):
            raise DataError(f"{path}: line {n}: {len(fields)} fields, the header has {len(header)}")
        rows.append(Row(path, n, dict(zip(header, fields))))
    if count is not None and count != len(rows):
        raise DataError(f"{path}: line 1 announces {count} rows, the file has {len(rows)}")
    return rows


def image_folder(folder: Path, skip: Collection[str] = ()) -> dict[str, list[Path]]:
    """Class folder name → its image files (any depth), for the ImageFolder tree ``folder``, both in
    torchvision's ImageFolder order (sorted class folders, then sorted walk); the sub-folders named
    in ``skip`` are no classes."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and entry.name not in skip)
    found = {}
    for name in classes:
        found[name] = [
            Path(walked, file)
            for walked, _, files in sorted(os.walk(folder / name))
            for file in sorted(files)
            if file.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def hold_out(strata: Sequence[int], fraction: float, seed: int) -> list[bool]:
    """Which items to hold out: a seeded ``fraction`` of each stratum (rounded; at least one and at
    most all but one of a stratum of two or more)."""
    strata_t = torch.as_tensor(list(strata), dtype=torch.int64)
    held = torch.zeros(len(strata_t), dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    for stratum in strata_t.unique().tolist():
        members = torch.nonzero(strata_t == stratum).flatten()
        n = len(members)
        k = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        held[members[torch.randperm(n, generator=g)[:k]]] = True
    return held.tolist()


def resolve_root(root: str) -> Path:
    """The dataset folder ``root`` (``~`` expanded): an error naming ``dataset.root`` unless it is
    an existing folder."""
    path = Path(root).expanduser()
    if not path.is_dir():
        problem = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"dataset.root: {path.resolve()} {problem}", "dataset.root")
    return path


class FolderDataset(components.Dataset):
    """A dataset read from the folder ``root``: images resized to ``resize`` and centre-cropped to
    ``image_size`` (the CRAYON code's 256 → 224), and for ERM training, when ``augment``, a random
    resized crop and flip instead. Subclasses list each split's :class:`Item` s and return
    :meth:`image_set`."""

    class Params(components.Params):
        root: str = Field(description="the dataset's folder (relative paths: to the working directory)")
        image_size: int = Field(default=224, ge=16, description="side of the square images models see")
        resize: int | None = Field(default=None, ge=16, description="side of the square resize before the centre crop; default image_size × 256 / 224")
        augment: bool = Field(default=True, description="random resized crop + flip when ERM training reads the training split")
        skip_unreadable: bool = Field(default=False, description="decode every image at load and leave out (and count) those that fail")
        resize_masks: bool = Field(default=False, description="stretch an object mask whose size differs from its image's to the image (by default an error naming both files)")

        @model_validator(mode="after")
        def _crop_fits(self) -> FolderDataset.Params:
            if self.resize is not None and self.resize < self.image_size:
                raise ValueError(f"resize ({self.resize}) must be at least image_size ({self.image_size}), which is cropped from it")
            return self

    def __init__(self, params: components.Params | None = None) -> None:
        super().__init__(params)
        self.root = resolve_root(self.params.root)

    def fingerprint(self) -> str:
        """A digest of the path, size and modification time of every file under :attr:`root`
        (stat only, computed once): data regenerated in place gets new cache entries. Annotation
        task folders inside it are left out (their answers change as people answer), and so are,
        counted in a warning, entries that cannot be read (a dangling link, a folder without
        permission)."""
        if "_fingerprint" not in self.__dict__:
            digest, unreadable = hashlib.blake2b(digest_size=16), []
            for folder, folders, files in os.walk(self.root, onerror=unreadable.append):
                if TASK_MARK in files:
                    folders.clear()
                    continue
                folders.sort()
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    try:
                        stat = os.stat(path)
                    except OSError as error:
                        unreadable.append(error)
                        continue
                    digest.update(os.fsencode(os.path.relpath(path, self.root)) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            if unreadable:
                first = unreadable[0]
                warn(f"dataset.root: {len(unreadable)} entr{'ies' if len(unreadable) > 1 else 'y'} under {self.root} cannot be read and {'are' if len(unreadable) > 1 else 'is'} left out of its fingerprint (first: {first.filename}: {first.strerror})")
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def resize(self) -> int:
        """The side of the square resize before the centre crop."""
        p = self.params
        return p.resize if p.resize is not None else round(p.image_size * 256 / 224)

    def path(self, name: str) -> Path:
        """``name`` inside :attr:`root` (an absolute ``name`` stays as it is)."""
        return self.root / Path(name).expanduser()

    def check_split(self, split: str) -> None:
        """A ``ValueError`` naming ``split`` unless it is one of the dataset's splits."""
        known = (*self.splits, *self.evaluation_splits)
        if split not in known:
            raise ValueError(f"{self.name}: split must be one of {', '.join(known)}, got {split!r}")

    def image_set(self, split: str, items: Sequence[Item], class_names: Sequence[str], spurious_names: Sequence[str], masks: bool = False) -> ImageSet:
        """The split of ``items`` (masks from their ``mask`` files when ``masks``), with the
        unreadable left out and counted when ``skip_unreadable``. Empty ``spurious_names`` (and every
        item's ``spurious`` 0): the dataset has no group attribute."""
        first: dict[str, Item] = {}
        for item in items:
            if (seen := first.setdefault(item.id, item)) is not item:
                raise DataError(f"{item.source}: item {item.id!r} is listed twice (also at {seen.source})")
        kept = self._readable(split, items, masks) if self.params.skip_unreadable else list(items)
        if not kept:
            why = f"all {len(items)} of its images are unreadable" if items else "its files list no item"
            raise DataError(f"dataset.root: {self.root}: the {split} split of {self.name!r} is empty: {why}", "dataset.root")
        size, resize = self.params.image_size, self.resize
        return ImageSet(
            images=FileImages([i.image for i in kept], size, resize, augmentable=self.params.augment, hint=SKIP_HINT),
            labels=torch.tensor([i.label for i in kept], dtype=torch.int64),
            spurious=torch.tensor([i.spurious for i in kept], dtype=torch.int64),
            masks=FileMasks([i.mask for i in kept], size, resize, hint=SKIP_HINT, images=[i.image for i in kept], stretch=self.params.resize_masks) if masks else None,
            ids=tuple(i.id for i in kept),
            class_names=tuple(class_names),
            spurious_names=tuple(spurious_names),
            skipped=len(items) - len(kept),
        )

    def _readable(self, split: str, items: Sequence[Item], masks: bool) -> list[Item]:
        with progress_bar(f"{self.name} {split}: decoding", len(items)) as advance:

            def decodes(item: Item) -> bool:
                ok = readable(item.image) and (not masks or readable(item.mask))
                advance()
                return ok

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                ok = list(pool.map(decodes, items))
        kept = [item for item, good in zip(items, ok) if good]
        if bad := [item for item, good in zip(items, ok) if not good]:
            names = ", ".join(str(i.image) for i in bad[:3]) + (" …" if len(bad) > 3 else "")
            warn(f"{self.name} {split}: left out {len(bad)} unreadable image{'s' * (len(bad) > 1)} ({names})")
        return kept
