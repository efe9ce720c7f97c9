"""``saliency-oracle``: judges a map by how much of its energy lies on the object."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from crayon_plugins.oracles.noise import NoiseParams, SimulatedAnnotator, apply_noise, uniforms
from crayon_plugins.oracles.regions import dilate, erode, shift
from pydantic import Field, model_validator

from crayon_plugins.api import Annotations, Answer, AttentionMaps, CrayonError, MapsToJudge, Need, bounding_boxes, energy_on_mask, hookimpl


class SaliencyOracle(SimulatedAnnotator):
    """A simulated annotator that looks at the object mask.

    The truthful answer for a map is *yes* when its share of energy on the feature-grid cells the
    object touches is at least ``yes_above``, *no* when it is below ``no_below``, and *maybe* in
    between; then :func:`~crayon_plugins.oracles.noise.apply_noise` abstains and flips. A map spread
    evenly scores the share of cells the object touches (0.09 on the default benchmark's 8×8 grid),
    so ``no_below`` = 0.2 also counts an evenly spread map as not looking at the object.

    Asked to draw where a model should look (:meth:`annotate_attention`), it draws the object mask
    with a seeded imperfection: ``region`` ``exact``, ``dilate`` / ``erode`` by ``region_pixels``,
    ``shift`` by ``region_pixels`` in a direction drawn per item, or ``box`` (the mask's bounding box).
    With ``abstain_rate`` an item gets no drawing; ``flip_rate`` does not apply to drawings.
    """

    needs = frozenset({Need.MASKS})

    class Params(NoiseParams):
        annotator: str = "saliency-oracle"
        yes_above: float = Field(default=0.5, ge=0, le=1)
        no_below: float = Field(default=0.2, ge=0, le=1)
        region: Literal["exact", "dilate", "erode", "shift", "box"] = Field(default="exact", description="how drawings depart from the mask")
        region_pixels: int = Field(default=2, ge=0, description="dilation, erosion or shift in pixels")

        @model_validator(mode="after")
        def _ordered(self):
            if self.no_below > self.yes_above:
                raise ValueError(f"no_below ({self.no_below}) must not exceed yes_above ({self.yes_above})")
            return self

    def truth(self, items: MapsToJudge) -> torch.Tensor:
        """Noise-free answers, ``(N,)`` :class:`~crayon_plugins.annotation.records.Answer` codes."""
        if items.masks is None:
            raise CrayonError("saliency-oracle needs object masks, and this dataset has none")
        share = torch.cat([energy_on_mask(items.maps[indices], masks) for indices, masks in items.masks.batches()])  # streamed
        answers = torch.full((len(share),), int(Answer.MAYBE), dtype=torch.int64)
        answers[share >= self.params.yes_above] = Answer.YES
        answers[share < self.params.no_below] = Answer.NO
        return answers

    def annotate_attention(self, items: MapsToJudge) -> AttentionMaps:
        if items.masks is None:
            raise CrayonError("saliency-oracle needs object masks to draw attention maps, and this dataset has none")
        p, masks = self.params, items.masks.all()  # drawings are (N, H, W) anyway
        regions = {
            "exact": lambda: masks,
            "dilate": lambda: dilate(masks, p.region_pixels),
            "erode": lambda: erode(masks, p.region_pixels),
            "shift": lambda: shift(masks, p.region_pixels, 2 * np.pi * uniforms(p.seed, p.annotator, items.ids, "shift")),
            "box": lambda: bounding_boxes(masks),
        }[p.region]()
        drawn = uniforms(p.seed, p.annotator, items.ids, "abstain") >= p.abstain_rate
        keep = [i for i in range(len(items.ids)) if drawn[i]]
        return AttentionMaps(tuple(items.ids[i] for i in keep), regions[keep], (p.annotator,) * len(keep))

    def annotate_maps(self, items: MapsToJudge) -> Annotations:
        answers = apply_noise(self.truth(items), items.ids, self.params)
        return Annotations(items.ids, answers, (self.params.annotator,) * len(items.ids))


@hookimpl
def crayon_annotation_sources():
    return {"saliency-oracle": SaliencyOracle}
