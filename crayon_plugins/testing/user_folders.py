"""Writers of small on-disk datasets in the layouts the ``image-folder`` and ``csv`` datasets read.

An image is a square in its class's colour at a random place (the object, and its mask) on noise
tinted by its group's shade (without groups: plain grey), saved as PNG, so what is loaded can be
compared with what was written pixel for pixel.
"""

from __future__ import annotations

import colorsys
import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")


def picture(label: int, classes: int, group: int | None, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(image (size, size, 3) uint8, mask (size, size) bool)``: a square in the colour of ``label``
    (of ``classes``) on noise, tinted by ``group`` (``None``: grey)."""
    shade = 0.5 if group is None else 0.3 + 0.4 * (group % 2)
    image = np.clip(shade + 0.05 * rng.standard_normal((size, size, 3)), 0, 1)
    side = max(2, size // 3)
    top, left = rng.integers(0, size - side + 1, 2)
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    image[mask] = colorsys.hsv_to_rgb(label / max(classes, 1), 0.9, 0.95)
    return (image * 255).round().astype(np.uint8), mask


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_image_folder(
    root: Path | str,
    per_class: int | Mapping[str, int] = 6,
    classes: Sequence[str] = ("cat", "dog"),
    splits: bool = False,
    masks: bool = False,
    image_size: int = 32,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Write class folders of PNGs at ``root``: ``root/<class>/<class>_NN.png`` (``per_class`` each),
    or with ``splits`` ``root/<split>/<class>/…`` (``per_class``: one count for every split, or a
    count per split); with ``masks`` the squares as ``masks/<same path>`` (255 = object). Returns
    per split folder (``""`` without ``splits``) the image paths below ``root`` in ImageFolder order."""
    root, rng = Path(root), np.random.default_rng(seed)
    counts = {name: (per_class if isinstance(per_class, int) else per_class[name]) for name in SPLITS} if splits else {"": per_class}
    written: dict[str, list[str]] = {}
    for folder, count in counts.items():
        written[folder] = []
        for label, name in enumerate(sorted(classes)):
            for i in range(count):
                path = f"{folder}/{name}/{name}_{i:02d}.png".lstrip("/")
                image, mask = picture(label, len(classes), None, image_size, rng)
                _save(image, root / path)
                if masks:
                    _save(mask.astype(np.uint8) * 255, root / "masks" / path)
                written[folder].append(path)
    return written


def write_csv_table(
    root: Path | str,
    labels: Sequence[str | int],
    splits: Sequence[str],
    groups: Sequence[str | int] | None = None,
    masks: bool = False,
    image_size: int = 32,
    seed: int = 0,
    file: str = "metadata.csv",
) -> list[dict[str, Any]]:
    """Write ``root/images/NNN.png`` for row ``N`` (label ``labels[N]``, split ``splits[N]``, group
    ``groups[N]`` if given), with ``masks`` ``root/masks/NNN.png`` too, and the table ``root/file``
    with the columns ``path, label, split`` (and ``group``, ``mask``), paths relative to ``root``.
    Returns the rows written."""
    root, rng = Path(root), np.random.default_rng(seed)
    names = sorted(set(labels), key=lambda v: (isinstance(v, str), v))
    rows = []
    for n, (label, split) in enumerate(zip(labels, splits)):
        group = None if groups is None else groups[n]
        image, mask = picture(names.index(label), len(names), None if group is None else sorted(set(groups), key=str).index(group), image_size, rng)
        row = {"path": f"images/{n:03d}.png", "label": label, "split": split}
        _save(image, root / row["path"])
        if group is not None:
            row["group"] = group
        if masks:
            row["mask"] = f"masks/{n:03d}.png"
            _save(mask.astype(np.uint8) * 255, root / row["mask"])
        rows.append(row)
    with open(root / file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
