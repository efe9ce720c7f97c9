"""The embedded benchmark: bars whose orientation is the label, with a coloured corner patch as shortcut.

Every image is grey noise with a thin, low-contrast bar (horizontal → class 0, vertical → class 1;
random colour offset, random position) and a saturated square patch in a random corner whose colour is
the spurious attribute (red → 0, blue → 1). In training the patch colour agrees with the label with
probability ``correlation``; validation and test are group-balanced. Like Waterbirds' background, the
patch is *localised* (so Grad-CAM can show it) and easier to learn than the core feature, which stays
learnable. The object mask is the bar.

The knobs, as calibrated with the default backbone (``docs/data-and-models.md``, "The embedded benchmark"): ``core_contrast`` sets
how fast the bar is learned (at 0.15–0.17 group-balanced training stops at 54–69 % worst-group
accuracy; at 0.20 the original learns the bar by itself); ``noise`` lets the network memorise the minority
images instead (without it the bar is learned within a few epochs); ``patch_size`` sets how much of the
original model's Grad-CAM the patch holds (at 0.19 the maps of "no" images are diffuse and the energy
loss lets the refined model keep a peaked map on the patch; at 0.3 they concentrate on the patch and
the loss pushes attention off it).
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from crayon_plugins.api import Dataset, ImageSet, Params, hookimpl

PATCH_COLOURS = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.2, 0.9]])


def _boxes(top: Tensor, left: Tensor, height: Tensor, width: Tensor, size: int) -> Tensor:
    """``(N, size, size)`` bool masks of axis-aligned boxes."""
    coords = torch.arange(size)[None]
    rows = (coords >= top[:, None]) & (coords < (top + height)[:, None])
    cols = (coords >= left[:, None]) & (coords < (left + width)[:, None])
    return rows[:, :, None] & cols[:, None, :]


class SpuriousBars(Dataset):
    """Group-shifted synthetic benchmark generated from ``seed`` (seconds for the default size).

    Images are ``(3, image_size, image_size)`` in ``[0, 1]``; masks cover the bar.
    """

    class Params(Params):
        seed: int = Field(default=0, description="the seed the data is generated from; the run's seed unless set here")
        n_train: PositiveInt = 3000
        n_val: PositiveInt = 400
        n_test: PositiveInt = 2000
        image_size: int = Field(default=64, ge=32)
        correlation: float = Field(default=0.95, ge=0.5, le=1.0, description="P(patch colour = label) in train")
        core_contrast: float = Field(default=0.18, gt=0, le=0.5, description="largest channel offset of the bar")
        noise: float = Field(default=0.1, ge=0, description="std of the background's pixel noise")
        bar_length: float = Field(default=0.45, gt=0, lt=0.8, description="fraction of the image side")
        bar_width: float = Field(default=0.05, gt=0, lt=0.5, description="fraction of the image side")
        patch_size: float = Field(default=0.3, gt=0, lt=0.45, description="fraction of the image side")

    def has_masks(self) -> bool:
        return True

    def has_groups(self) -> bool:
        return True

    def load(self, split: str) -> ImageSet:
        if split not in self.splits:
            raise ValueError(f"split must be one of {self.splits}, got {split!r}")
        p = self.params
        n = {"train": p.n_train, "val": p.n_val, "test": p.n_test}[split]
        g = torch.Generator().manual_seed(p.seed * 1000 + self.splits.index(split))
        if split == "train":
            labels = torch.randint(0, 2, (n,), generator=g)
            agree = torch.rand(n, generator=g) < p.correlation
            spurious = torch.where(agree, labels, 1 - labels)
        else:  # every group equally often
            groups = (torch.arange(n) % 4)[torch.randperm(n, generator=g)]
            labels, spurious = groups // 2, groups % 2
        return self._render(split, labels, spurious, g)

    def _render(self, split: str, labels: Tensor, spurious: Tensor, g: torch.Generator) -> ImageSet:
        p, n, size = self.params, len(labels), self.params.image_size
        images = 0.5 + p.noise * torch.randn(n, 3, size, size, generator=g)
        length, width = max(2, round(p.bar_length * size)), max(1, round(p.bar_width * size))
        patch = max(2, round(p.patch_size * size))
        centre = torch.randint(length // 2 + 1, size - length // 2, (2, n), generator=g)
        vertical = labels == 1
        height = torch.where(vertical, length, width)
        breadth = torch.where(vertical, width, length)
        bars = _boxes(centre[0] - height // 2, centre[1] - breadth // 2, height, breadth, size)
        offset = torch.rand(n, 3, generator=g) - 0.5
        offset = offset / offset.abs().amax(dim=1, keepdim=True) * p.core_contrast
        images = images + bars[:, None] * offset[:, :, None, None]
        corner = torch.randint(0, 4, (n,), generator=g)
        top = torch.where(corner < 2, 1, size - patch - 1)
        left = torch.where(corner % 2 == 0, 1, size - patch - 1)
        patches = _boxes(top, left, torch.full((n,), patch), torch.full((n,), patch), size)
        images = torch.where(patches[:, None], PATCH_COLOURS[spurious][:, :, None, None], images)
        return ImageSet(
            images=images.clamp(0, 1),
            labels=labels,
            spurious=spurious,
            masks=bars & ~patches,
            ids=tuple(f"{split}-{i:05d}" for i in range(n)),
            class_names=("horizontal", "vertical"),
            spurious_names=("red", "blue"),
        )


@hookimpl
def crayon_datasets():
    return {"spurious-bars": SpuriousBars}
