"""Per-item data read lazily: a split's images and masks, streamed in minibatches through a
``DataLoader`` so memory is bounded by the batch, not the dataset.

:class:`Items` is the contract (a map-style ``torch.utils.data.Dataset``); :class:`TensorItems` holds
a split in memory (the embedded benchmark), :class:`FileImages` and :class:`FileMasks` decode files
on demand with the transforms the CRAYON code uses: a square resize to ``resize`` then a centre crop
to ``size`` for everything, and for ERM training (:meth:`Items.augmented`) a random resized crop and a
horizontal flip instead.
"""

from __future__ import annotations

import copy
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from crayon_plugins.errors import DataError


@dataclass(frozen=True)
class Loading:
    """How minibatches are read: ``num_workers`` decoding processes (0: in the calling process) and
    ``pin_memory`` (page-locked batches, faster copies to a GPU)."""

    num_workers: int = 0
    pin_memory: bool = False


def _stacked(batch: Tensor | list[Tensor]) -> Tensor:
    return batch if isinstance(batch, Tensor) else torch.stack(batch)


class Items(Dataset, ABC):
    """One tensor per item of a split, read on demand: ``items[i]`` is item ``i``; ``items[indices]``
    (a sequence, slice or 1-D index tensor) stacks those items; :meth:`batches` streams them."""

    loading: Loading = Loading()
    in_memory: bool = False
    """Whether the items already sit in memory (no decoding workers are worth starting)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def item(self, index: int) -> Tensor:
        """Item ``index``."""

    def __getitems__(self, indices: list[int]) -> Tensor:
        """The items at ``indices``, stacked (``DataLoader`` fetches whole batches through this)."""
        return torch.stack([self.item(i) for i in indices])

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, int):
            return self.item(index)
        if isinstance(index, slice):
            index = range(len(self))[index]
        return self.__getitems__([int(i) for i in (index.tolist() if isinstance(index, Tensor) else index)])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, *item shape)``."""
        return (len(self), *self.item(0).shape)

    def augmented(self) -> Items:
        """The items as ERM training sees them (random augmentation where the dataset declares it)."""
        return self

    def seeded(self, seed: int) -> Items:
        """The items with their random augmentation drawn from ``seed`` (and each item's index)."""
        return self

    def with_loading(self, loading: Loading) -> Items:
        """A copy read with ``loading``."""
        found = copy.copy(self)
        found.loading = loading
        return found

    def batches(
        self, indices: Tensor | None = None, batch_size: int = 256, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """``(indices, items)`` minibatches of the items at ``indices`` (default: all, in order).
        Random augmentation is drawn from one seed taken from ``generator`` and each item's index,
        so it does not depend on the number of decoding workers; nothing draws from torch's global
        generator."""
        order = torch.arange(len(self)) if indices is None else indices
        chunks = order.split(batch_size)
        workers = 0 if self.in_memory else self.loading.num_workers
        source = self if generator is None else self.seeded(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        loader = DataLoader(
            source,
            batch_sampler=[chunk.tolist() for chunk in chunks],
            num_workers=workers,
            pin_memory=self.loading.pin_memory and torch.cuda.is_available(),
            collate_fn=_stacked,
            generator=torch.Generator(),  # the loader's own seed: never drawn from the global generator
        )
        try:
            yield from zip(chunks, loader)
        except DataError as error:  # raised in a worker: torch appends the worker's traceback
            raise DataError(str(error).rstrip().rsplit("DataError: ", 1)[-1]) from None

    def all(self) -> Tensor:
        """Every item, stacked (for small splits and masks; streams through :meth:`batches`)."""
        return torch.cat([batch for _, batch in self.batches()])


class TensorItems(Items):
    """Items held in one tensor (its first dimension indexes the items)."""

    in_memory = True

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __len__(self) -> int:
        return len(self.tensor)

    def item(self, index: int) -> Tensor:
        return self.tensor[index]

    def __getitems__(self, indices: list[int]) -> Tensor:
        return self.tensor[indices]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.tensor.dtype

    def all(self) -> Tensor:
        return self.tensor


def as_items(value: Items | Tensor) -> Items:
    """``value``, wrapped in :class:`TensorItems` when it is a tensor."""
    return TensorItems(value) if isinstance(value, Tensor) else value


def default_workers() -> int:
    """Decoding processes for on-disk datasets: one per core, leaving one for training, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
"""Pillow's modes of images wider than 8 bits, and the range their values span: a 16-bit PNG opens
as ``I`` or ``I;16``, and converting it straight to ``L`` or ``RGB`` clips every value above 255
(a nearly white picture)."""


def _decode(path: Path, mode: str, hint: str = "") -> Image.Image:
    try:
        with Image.open(path) as image:
            if image.mode in WIDE_MODES:
                return _narrowed(image, WIDE_MODES[image.mode], path).convert(mode)
            return image.convert(mode)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found{hint}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode the image ({error}){hint}") from None


def _narrowed(image: Image.Image, top: int, path: Path) -> Image.Image:
    """A wide grey-level ``image`` as 8-bit ``L``, its ``0 … top`` range mapped onto ``0 … 255``."""
    values = np.asarray(image, dtype=np.float64)
    if values.size and (values.min() < 0 or values.max() > top):
        raise DataError(f"{path}: a {image.mode} image with values from {values.min():g} to {values.max():g}, outside 0 … {top}")
    return Image.fromarray(np.round(values * (255 / top)).astype(np.uint8), mode="L")


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path``, from its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode the image ({error})") from None


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], generator: torch.Generator) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a crop as torchvision's ``RandomResizedCrop(scale=scale)`` draws it
    (aspect 3/4–4/3, log-uniform; ten tries, then the largest central crop within that aspect
    range), every draw from ``generator``."""
    uniform = lambda low, high: low + (high - low) * float(torch.rand(1, generator=generator))  # noqa: E731
    for _ in range(10):
        area = height * width * uniform(*scale)
        aspect = math.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    ratio = width / height
    if ratio < 3 / 4:
        w, h = width, round(width / (3 / 4))
    elif ratio > 4 / 3:
        w, h = round(height * 4 / 3), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _augment(image: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """torchvision's ``RandomResizedCrop(size, scale=(0.7, 1))`` then ``RandomHorizontalFlip()``,
    drawn from ``generator``."""
    top, left, h, w = random_resized_crop_box(*image.shape[-2:], (0.7, 1.0), generator)
    image = TF.resized_crop(image, top, left, h, w, [size, size], antialias=True)
    return TF.horizontal_flip(image) if float(torch.rand(1, generator=generator)) < 0.5 else image


def readable(path: Path) -> bool:
    """Whether ``path`` decodes as an image."""
    try:
        _decode(path, "RGB")
    except DataError:
        return False
    return True


class FileImages(Items):
    """Images decoded from ``paths`` as ``(3, size, size)`` float32 in ``[0, 1]``: resized to
    ``resize × resize``, then centre-cropped; :meth:`augmented` (unless not ``augmentable``): a
    random resized crop (scale 0.7–1) and a random horizontal flip instead. ``hint`` ends the
    message of a decoding error (what the user can do about it)."""

    def __init__(self, paths: Sequence[Path], size: int, resize: int, augment: bool = False, augmentable: bool = True, hint: str = "") -> None:
        self.paths, self.size, self.resize, self.augment = list(paths), size, resize, augment
        self.augmentable, self.hint, self.seed = augmentable, hint, 0

    def __len__(self) -> int:
        return len(self.paths)

    def item(self, index: int) -> Tensor:
        image = TF.to_dtype(TF.to_image(_decode(self.paths[index], "RGB", self.hint)), torch.float32, scale=True)
        if self.augment:
            image = _augment(image, self.size, torch.Generator().manual_seed(self.seed * 1_000_003 + index))
        else:
            image = TF.center_crop(TF.resize(image, [self.resize, self.resize], antialias=True), [self.size, self.size])
        return image.clamp_(0, 1)  # antialiased resizing overshoots a little

    def seeded(self, seed: int) -> Items:
        if not self.augment:
            return self
        found = copy.copy(self)
        found.seed = seed
        return found

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), 3, self.size, self.size)

    def augmented(self) -> Items:
        if self.augment or not self.augmentable:
            return self
        return FileImages(self.paths, self.size, self.resize, True, True, self.hint).with_loading(self.loading)


class FileMasks(Items):
    """Object masks decoded from ``paths`` (non-zero = object) as ``(size, size)`` bool, with the
    geometry of :class:`FileImages`' evaluation transform (nearest-neighbour resize, centre crop).
    With the ``images`` they belong to, a mask whose size differs from its image's is a
    :class:`DataError` naming both files, unless ``stretch`` (then it is resized like its image)."""

    def __init__(self, paths: Sequence[Path], size: int, resize: int, hint: str = "", images: Sequence[Path] | None = None, stretch: bool = False) -> None:
        self.paths, self.size, self.resize, self.hint = list(paths), size, resize, hint
        self.images, self.stretch = None if images is None else list(images), stretch

    def __len__(self) -> int:
        return len(self.paths)

    def item(self, index: int) -> Tensor:
        decoded = _decode(self.paths[index], "L", self.hint)
        if self.images is not None and not self.stretch and decoded.size != (found := image_size(self.images[index])):
            raise DataError(
                f"{self.paths[index]}: the mask is {decoded.width}×{decoded.height}, its image {self.images[index]} is {found[0]}×{found[1]}; "
                "fix the mask, or set resize_masks = true under [dataset] to stretch masks to their images"
            )
        mask = TF.resize(TF.to_image(decoded), [self.resize, self.resize], interpolation=T.InterpolationMode.NEAREST)
        return TF.center_crop(mask, [self.size, self.size])[0] > 0

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), self.size, self.size)
