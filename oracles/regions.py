"""Imperfect drawings of the object: how a simulated annotator's attention map departs from the mask.

Real annotators draw loosely: a region a little too large or too small, a little off, or just a box.
Each function takes ``(N, H, W)`` bool masks and returns regions of the same shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def dilate(masks: Tensor, pixels: int) -> Tensor:
    """Grow each mask by ``pixels`` in every direction (a square structuring element)."""
    if pixels == 0:
        return masks
    return F.max_pool2d(masks[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)[:, 0] > 0


def erode(masks: Tensor, pixels: int) -> Tensor:
    """Shrink each mask by ``pixels`` (pixels outside the image count as background)."""
    return ~dilate(~masks, pixels)


def shift(masks: Tensor, pixels: int, angles: np.ndarray) -> Tensor:
    """Move mask ``i`` by ``pixels`` in direction ``angles[i]`` (radians), rounded to whole pixels;
    what leaves the image is lost."""
    n, height, width = masks.shape
    out = torch.zeros_like(masks)
    for i, angle in enumerate(angles):
        dy, dx = round(pixels * math.sin(angle)), round(pixels * math.cos(angle))
        source = masks[i, max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
        out[i, max(0, dy) : max(0, dy) + source.shape[0], max(0, dx) : max(0, dx) + source.shape[1]] = source
    return out
