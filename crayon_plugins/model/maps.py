"""Saliency-map arithmetic shared by interpreters, oracles and refiners."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-8
"""Added before dividing by a map's maximum or sum, so all-zero maps stay finite (and zero)."""


def normalise_maps(maps: Tensor) -> Tensor:
    """``(B, h, w)`` non-negative maps → each divided by its maximum (plus :data:`EPS`)."""
    return maps / (maps.amax(dim=(-2, -1), keepdim=True) + EPS)


def grid_masks(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(N, H, W)`` object masks → ``(N, h, w)`` float: 1 on the feature-grid cells the object touches."""
    return F.adaptive_max_pool2d(masks[:, None].float(), grid)[:, 0]


def energy_on_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """``(N,)`` share of each map's energy on the grid cells its object mask touches (0 for a zero map)."""
    cells = grid_masks(masks, tuple(maps.shape[-2:]))
    return (maps * cells).sum(dim=(-2, -1)) / (maps.sum(dim=(-2, -1)) + EPS)


def bounding_boxes(regions: Tensor) -> Tensor:
    """``(N, H, W)`` bool regions → the ``(N, H, W)`` bool filled bounding box of each (empty stays empty)."""
    rows, cols = regions.any(dim=2), regions.any(dim=1)  # (N, H), (N, W)

    def span(hit: Tensor) -> Tensor:
        index = torch.arange(hit.shape[1])
        first = torch.where(hit, index, hit.shape[1]).amin(dim=1, keepdim=True)
        last = torch.where(hit, index, -1).amax(dim=1, keepdim=True)
        return (index >= first) & (index <= last)

    return span(rows)[:, :, None] & span(cols)[:, None, :]
