"""``attention``: where a model's saliency maps put their mass, beside where the original model's did.

Whether a map lies on the object is measured as the energy-based pointing game (Wang et al.,
"Score-CAM", CVPRW 2020; Rao et al.'s model-guidance study, ICCV 2023) and relevance mass accuracy
(Arras et al., "CLEVR-XAI", 2022; Quantus) do: the share of the map's total mass inside the object
mask, here on the map's grid as the saliency oracle judges it (the cells the object touches). A refinement that only pushes attention
away from where the original model looked can also give a diffuse map; the entropy and spread of the
maps, and their mass where the original looked, tell the two apart.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crayon_plugins.api import CrayonError, Items, Metric, Need, Predictions, energy_on_mask, hookimpl

HIGH = 0.5
"""A map's high region: its cells at or above this fraction of its maximum."""


def high_cells(maps: Tensor) -> Tensor:
    """``(N, h, w)`` bool: each map's cells at or above :data:`HIGH` of its maximum (none for a zero map)."""
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps >= HIGH * peak) & (peak > 0)


def spread(maps: Tensor) -> Tensor:
    """``(N,)`` share of each map's cells in its high region (:func:`high_cells`)."""
    return high_cells(maps).double().mean(dim=(-2, -1))


def entropy(maps: Tensor) -> Tensor:
    """``(N,)`` Shannon entropy of each map as a distribution over its cells, divided by that of the
    uniform distribution: 0 when one cell holds all the mass, 1 when all hold the same (0 on a
    one-cell grid, NaN for a zero map)."""
    p = maps.double().flatten(1)
    p = p / p.sum(dim=1, keepdim=True)
    cells = p.shape[1]
    return -torch.xlogy(p, p).sum(dim=1) / (math.log(cells) if cells > 1 else 1.0)


def on_object(maps: Tensor, masks: Items) -> Tensor:
    """``(N,)`` share of each map's mass on the grid cells its object mask touches (masks streamed)."""
    return torch.cat([energy_on_mask(maps[indices].double(), batch) for indices, batch in masks.batches()])


def mean(values: Tensor, keep: Tensor) -> float:
    """The mean of ``values`` where ``keep``; NaN where nothing is kept."""
    return float(values[keep].mean()) if bool(keep.any()) else math.nan


def per_image(maps: Tensor, original: Tensor, on_object_share: Tensor) -> dict[str, Tensor]:
    """``(N,)`` per image: ``maps``' mass on the object (``on_object_share``, computed by
    :func:`on_object`) and where ``original`` looked, entropy, spread, and whether the map (``alive``)
    and the original map (``seen``) are not all zero."""
    return {
        "energy_on_object": on_object_share,
        "energy_where_original_looked": energy_on_mask(maps.double(), high_cells(original)),
        "entropy": entropy(maps),
        "spread": spread(maps),
        "alive": maps.amax(dim=(-2, -1)) > 0,
        "seen": original.amax(dim=(-2, -1)) > 0,
    }


def summary(values: dict[str, Tensor], keep: Tensor | None = None) -> dict[str, float]:
    """The means over the images (of ``keep``, default all) whose map is not all zero (``zero_maps``:
    the share that is) of :func:`per_image`'s numbers; the mass where the original looked over images
    whose original map is not zero either."""
    keep = torch.ones_like(values["alive"]) if keep is None else keep
    alive = values["alive"] & keep
    return {
        "energy_on_object": mean(values["energy_on_object"], alive),
        "energy_where_original_looked": mean(values["energy_where_original_looked"], alive & values["seen"]),
        "entropy": mean(values["entropy"], alive),
        "spread": mean(values["spread"], alive),
        "zero_maps": float((~values["alive"][keep]).double().mean()) if bool(keep.any()) else math.nan,
    }


YES_ABOVE, NO_BELOW = 0.5, 0.2
"""The noise-free ``saliency-oracle``'s default thresholds on a map's mass on the object: at least
``YES_ABOVE`` is *yes*, below ``NO_BELOW`` *no*, *maybe* between."""


def answered(share: Tensor) -> dict[str, Tensor]:
    """``"yes"`` / ``"maybe"`` / ``"no"`` → which images a noise-free saliency oracle would answer
    so about a map whose mass on the object is ``share``."""
    return {"yes": share >= YES_ABOVE, "maybe": (share >= NO_BELOW) & (share < YES_ABOVE), "no": share < NO_BELOW}


class AttentionShares(Metric):
    """Where the evaluated model's test maps (for its predictions) put their mass, and the same
    numbers for the original model's maps (for its own predictions) under ``original_`` (``attention``).

    ``energy_on_object``: the share of a map's mass on the cells its object mask touches;
    ``energy_where_original_looked``: on the cells where the original model's map of the image is at
    least half its maximum; ``entropy``: normalised Shannon entropy; ``spread``: the share of cells at
    least half the map's maximum; each a mean over the images whose map is not all zero, whose share
    is ``zero_maps``. Shares are fractions in ``[0, 1]``, as every metric's.

    ``attention_yes``, ``attention_maybe``, ``attention_no``: the same numbers over the images a
    noise-free saliency oracle would answer *yes*, *maybe* or *no* about the original model's map
    (:func:`answered`; ``images``: their share of the split), so a row shows whether maps the original
    had wrong moved onto the object or only away from where it looked.
    """

    needs = frozenset({Need.MAPS, Need.MASKS})

    def compute(self, predictions: Predictions) -> dict[str, dict[str, float]]:
        maps, original, masks = predictions.maps, predictions.original_maps, predictions.split.masks
        if maps is None or original is None:
            raise CrayonError(f"metric {self.name!r} needs the evaluated and the original model's maps (declare 'maps' in needs)")
        if masks is None:
            raise CrayonError(f"metric {self.name!r} needs object masks, and the evaluated split has none")
        share, original_share = on_object(maps, masks), on_object(original, masks)
        values, before = per_image(maps, original, share), per_image(original, original, original_share)
        found = summary(values)
        found.update({f"original_{k}": v for k, v in summary(before).items()})
        groups = {answer: keep & before["alive"] for answer, keep in answered(original_share).items()}
        by_answer = {
            f"attention_{answer}": {"images": float(keep.double().mean()), **summary(values, keep), **{f"original_{k}": v for k, v in summary(before, keep).items()}}
            for answer, keep in groups.items()
        }
        return {"attention": found, **by_answer}


@hookimpl
def crayon_metrics():
    return {"attention": AttentionShares}
