"""Writers of small (or large) on-disk fixtures in exactly the real benchmarks' public formats.

:func:`write_waterbirds`, :func:`write_biased_celeba` and :func:`write_backgrounds_challenge` write
real JPEG / PNG files and the metadata tables the ``waterbirds``, ``biased-celeba`` and
``backgrounds-challenge`` datasets read, and return what they wrote, for tests to compare with what
is loaded. Waterbirds and CelebA images are drawn by the embedded benchmark's renderer
(``spurious-bars``: the bar's orientation is the label, the corner patch's colour the spurious
attribute, the bar the object mask), so a model can learn from them; they are rendered in chunks,
so writing 20,000 images at 224 px never holds more than a chunk in memory.
"""

from __future__ import annotations

import colorsys
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from crayon_plugins.factory import create_dataset
from crayon_plugins.utils.progress import progress_bar

WATERBIRDS_COLUMNS = ("img_id", "img_filename", "y", "split", "place", "place_filename")
"""The columns of the release's ``metadata.csv``."""
WATERBIRDS_SPECIES = ("001.Landbird_sim", "002.Waterbird_sim")
"""Species folders of :func:`write_waterbirds`, by label (the release's are the 200 CUB species)."""
WATERBIRDS_PLACES = ("/b/bamboo_forest", "/o/ocean")
"""``place_filename`` folders, by place (land, water)."""

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
"""The 40 CelebA attributes, in the order of the split files' header."""
CELEBA_FILES = {
    "train": "biased_celeba_black_hair_1_100_train.csv",
    "val": "biased_celeba_black_hair_val.csv",
    "test": "biased_celeba_black_hair_test.csv",
}
"""Split files of :func:`write_biased_celeba` (the authors publish train and test only)."""

IN9_CLASSES = ("00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore", "05_insect", "06_musical instrument", "07_primate", "08_fish")
"""ImageNet-9's class folders."""


def _groups(n: int, correlated: bool, correlation: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(labels, spurious)`` of ``n`` items: the attribute agreeing with the label with probability
    ``correlation`` when ``correlated``, else every group equally often."""
    if correlated:
        labels = torch.randint(0, 2, (n,), generator=g)
        agree = torch.rand(n, generator=g) < correlation
        return labels, torch.where(agree, labels, 1 - labels)
    groups = (torch.arange(n) % 4)[torch.randperm(n, generator=g)]
    return groups // 2, groups % 2


def _rendered(labels: Tensor, spurious: Tensor, image_size: int, seed: int, chunk: int, description: str, bars: dict[str, Any]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, image (H, W, 3) uint8, mask (H, W) bool)`` of each item, rendered ``chunk`` at a time."""
    renderer = create_dataset("spurious-bars", {"seed": seed, "image_size": image_size, **bars})
    g = torch.Generator().manual_seed(seed)
    with progress_bar(description, len(labels)) as advance:
        for start in range(0, len(labels), chunk):
            split = renderer._render("chunk", labels[start : start + chunk], spurious[start : start + chunk], g)
            images = (split.images.all() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            masks = split.masks.all().numpy()
            for offset in range(len(images)):
                yield start + offset, images[offset], masks[offset]
            advance(len(images))


def _save(array: np.ndarray, path: Path) -> None:
    """``array`` as the image file ``path`` (JPEG at quality 95 without chroma subsampling, which would blur thin coloured bars; or lossless by its suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95, subsampling=0)


def write_waterbirds(
    root: Path | str,
    n_train: int,
    n_val: int,
    n_test: int,
    image_size: int = 64,
    seed: int = 0,
    correlation: float = 0.95,
    segmentations: bool = True,
    chunk: int = 128,
    **bars: Any,
) -> list[dict[str, Any]]:
    """Write a Waterbirds-format folder at ``root``: ``metadata.csv`` (``img_id, img_filename, y,
    split, place, place_filename``, the splits' rows interleaved as in the release), one JPEG per row
    in the species folder of its label, and, with ``segmentations``, the bar as
    ``segmentations/<species>/<image>.png`` (255 = object). In training the place agrees with the
    label with probability ``correlation``; validation and test are group-balanced. ``bars``: further
    ``spurious-bars`` options (``noise``, ``core_contrast``, …). Returns the metadata rows."""
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    codes, labels, places = [], [], []
    for code, n in enumerate((n_train, n_val, n_test)):
        y, place = _groups(n, code == 0, correlation, g)
        codes.append(torch.full((n,), code))
        labels.append(y)
        places.append(place)
    order = torch.randperm(n_train + n_val + n_test, generator=g)
    codes, labels, places = (torch.cat(t)[order] for t in (codes, labels, places))
    rows = []
    for index, image, mask in _rendered(labels, places, image_size, seed, chunk, "writing Waterbirds", bars):
        y, place = int(labels[index]), int(places[index])
        species = WATERBIRDS_SPECIES[y]
        name = f"{species}/{species.split('.', 1)[1]}_{index + 1:05d}.jpg"
        _save(image, root / name)
        if segmentations:
            _save(mask.astype(np.uint8) * 255, (root / "segmentations" / name).with_suffix(".png"))
        place_file = f"{WATERBIRDS_PLACES[place]}/{index + 1:08d}.jpg"
        rows.append({"img_id": index + 1, "img_filename": name, "y": y, "split": int(codes[index]), "place": place, "place_filename": place_file})
    with open(root / "metadata.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=WATERBIRDS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_biased_celeba(
    root: Path | str,
    n_train: int,
    n_test: int,
    n_val: int = 0,
    image_size: int = 64,
    seed: int = 0,
    correlation: float = 0.95,
    ambiguous: int = 2,
    chunk: int = 128,
    **bars: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Write a Biased-CelebA-format folder at ``root``: ``img_align_celeba/NNNNNN.jpg`` and the split
    files (:data:`CELEBA_FILES`; the val file only when ``n_val``), whitespace-separated with the 40
    attributes as 0 / 1. ``Smiling`` is the bar's orientation and ``Black_Hair`` the patch colour
    (``Blond_Hair`` its opposite), agreeing with probability ``correlation`` in training, balanced
    elsewhere; each file also gets ``ambiguous`` rows with neither or both hair colours (which the
    loader leaves out), the other attributes are random. Returns each split's rows."""
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    plan = []  # (split, label, black, blond) per image, in file-number order
    for split, n in sizes.items():
        if n == 0:
            continue
        labels, black = _groups(n, split == "train", correlation, g)
        plan += [(split, int(y), int(b), 1 - int(b)) for y, b in zip(labels, black)]
        plan += [(split, int(torch.randint(0, 2, (), generator=g)), k % 2, k % 2) for k in range(ambiguous)]
    labels = torch.tensor([p[1] for p in plan])
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split, n in sizes.items() if n}
    for index, image, _ in _rendered(labels, torch.tensor([p[2] for p in plan]), image_size, seed, chunk, "writing Biased CelebA", bars):
        split, y, black, blond = plan[index]
        name = f"{index + 1:06d}.jpg"
        _save(image, root / "img_align_celeba" / name)
        values = dict(zip(CELEBA_ATTRIBUTES, torch.randint(0, 2, (40,), generator=g).tolist()))
        rows[split].append({"Filename": name, **values, "Smiling": y, "Black_Hair": black, "Blond_Hair": blond})
    for split, found in rows.items():
        lines = [" ".join(["Filename", *CELEBA_ATTRIBUTES])] + [" ".join(str(row[c]) for c in ["Filename", *CELEBA_ATTRIBUTES]) for row in found]
        (root / CELEBA_FILES[split]).write_text("\n".join(lines) + "\n")
    return rows


def _colour(index: int, count: int, saturation: float, value: float) -> Tensor:
    return torch.tensor(colorsys.hsv_to_rgb(index / count, saturation, value))[:, None, None]


def write_backgrounds_challenge(
    root: Path | str,
    per_class: int = 2,
    train_per_class: int | None = None,
    image_size: int = 64,
    seed: int = 0,
    classes: tuple[str, ...] = IN9_CLASSES,
) -> dict[str, list[tuple[str, int]]]:
    """Write a Backgrounds-Challenge-format folder at ``root``: ``original/train`` (``train_per_class``
    images per class, default twice ``per_class``) and ``original/val``, ``mixed_same/val``,
    ``mixed_rand/val``, ``only_fg/val`` (``per_class`` each, the same file names) in ``classes``'
    folders. An image is a disc in its class's colour (the foreground) on noise tinted in its class's
    colour (the background, a shortcut); the variants put the same disc on a new background of the
    same class, of a random class, or on black. Returns each folder's ``(path below root,
    label)`` in ImageFolder order."""
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    k, size = len(classes), image_size
    coords = torch.arange(size, dtype=torch.float32)

    def background(c: int) -> Tensor:
        return (_colour(c, k, 0.4, 0.6) + 0.08 * torch.randn(3, size, size, generator=g)).clamp(0, 1)

    def disc() -> Tensor:
        centre = size * (0.35 + 0.3 * torch.rand(2, generator=g))
        radius = size * (0.15 + 0.1 * float(torch.rand((), generator=g)))
        return (coords[:, None] - centre[0]) ** 2 + (coords[None, :] - centre[1]) ** 2 <= radius**2

    def save(image: Tensor, folder: str, c: int, name: str) -> tuple[str, int]:
        path = f"{folder}/{classes[c]}/{name}"
        _save((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), root / path)
        return path, c

    train_n = 2 * per_class if train_per_class is None else train_per_class
    written: dict[str, list[tuple[str, int]]] = {f: [] for f in ("original/train", "original/val", "mixed_same/val", "mixed_rand/val", "only_fg/val")}
    with progress_bar("writing Backgrounds Challenge", k * (train_n + 4 * per_class)) as advance:
        for c in range(k):
            fg = _colour(c, k, 0.9, 0.95)
            for i in range(train_n):
                written["original/train"].append(save(torch.where(disc(), fg, background(c)), "original/train", c, f"n{c:08d}_{i}.JPEG"))
                advance()
            for i in range(per_class):
                name, mask = f"n{c:08d}_{train_n + i}.JPEG", disc()
                other = int(torch.randint(0, k, (), generator=g))
                variants = {"original/val": background(c), "mixed_same/val": background(c), "mixed_rand/val": background(other), "only_fg/val": torch.zeros(3, size, size)}
                for folder, back in variants.items():
                    written[folder].append(save(torch.where(mask, fg, back), folder, c, name))
                advance(4)
    return {folder: sorted(found, key=lambda item: (item[1], item[0])) for folder, found in written.items()}
