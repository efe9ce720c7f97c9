"""``saliency-oracle``: judges a map by how much of its energy lies on the object."""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from crayon_plugins.components import AnnotationSource
from crayon_plugins.data import Answer, Annotations, MapsToJudge
from crayon_plugins.errors import CrayonError
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.maps import energy_on_mask

from .noise import NoiseParams, apply_noise


class SaliencyOracle(AnnotationSource):
    """A simulated annotator that looks at the object mask.

    The truthful answer for a map is *yes* when its share of energy on the feature-grid cells the
    object touches is at least ``yes_above``, *no* when it is below ``no_below``, and *maybe* in
    between; then :func:`~crayon_plugins.oracles.noise.apply_noise` abstains and flips. A map spread
    evenly scores the share of cells the object touches (0.09 on the default benchmark's 8×8 grid),
    so ``no_below`` = 0.2 also counts an evenly spread map as not looking at the object.
    """

    class Params(NoiseParams):
        annotator: str = "saliency-oracle"
        yes_above: float = Field(default=0.5, ge=0, le=1)
        no_below: float = Field(default=0.2, ge=0, le=1)

        @model_validator(mode="after")
        def _ordered(self):
            if self.no_below > self.yes_above:
                raise ValueError(f"no_below ({self.no_below}) must not exceed yes_above ({self.yes_above})")
            return self

    def truth(self, items: MapsToJudge) -> torch.Tensor:
        """Noise-free answers, ``(N,)`` :class:`~crayon_plugins.data.Answer` codes."""
        if items.masks is None:
            raise CrayonError("saliency-oracle needs object masks, and this dataset has none")
        share = energy_on_mask(items.maps, items.masks)
        answers = torch.full((len(share),), int(Answer.MAYBE), dtype=torch.int64)
        answers[share >= self.params.yes_above] = Answer.YES
        answers[share < self.params.no_below] = Answer.NO
        return answers

    def annotate_maps(self, items: MapsToJudge) -> Annotations:
        answers = apply_noise(self.truth(items), items.ids, self.params)
        return Annotations(items.ids, answers, (self.params.annotator,) * len(items.ids))


@hookimpl
def crayon_annotation_sources():
    return {"saliency-oracle": SaliencyOracle}
