"""The seeded noise model of simulated annotators: abstentions, a bias toward one answer, flips.

Every random draw is a hash of ``(seed, annotator, item id, purpose)``, so an item's noise does not
depend on which other items are annotated or in what order.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from crayon_plugins.annotation.paper_mix import REAL_ANNOTATORS
from crayon_plugins.api import AnnotationSource, Answer, CrayonError, Params, Question

MIX_TOLERANCE = 0.01
"""How far (in share of answers) a calibrated answer mix may miss the target when it cannot be exact."""


class NoiseParams(Params):
    """Options every oracle shares: who it is and how it errs.

    Each answer, in turn: abstains (*maybe*) with ``abstain_rate``; else, with ``|yes_bias|``, answers
    *yes* (``yes_bias`` > 0) or *no* (< 0) without looking; else gives the truthful answer, a *yes* or
    *no* flipped with ``flip_rate``. ``answer_mix`` names a dataset whose real annotators' answers are known (:data:`~crayon_plugins.annotation.paper_mix.REAL_ANNOTATORS`) and sets
    ``abstain_rate`` and ``yes_bias`` so that the expected shares of yes / maybe / no on the items
    judged are the real annotators' (see :func:`calibrate`).
    """

    annotator: str = Field(default="oracle", min_length=1, description="id written on every answer")
    seed: int = Field(default=0, description="the seed of the noise's draws; the run's seed unless set here")
    flip_rate: float = Field(default=0.0, ge=0, le=1, description="P(yes ↔ no) for a truthful answer")
    abstain_rate: float = Field(default=0.0, ge=0, le=1, description="P(answer maybe instead)")
    yes_bias: float = Field(default=0.0, ge=-1, le=1, description="P(answer yes regardless); negative: P(no)")
    answer_mix: Literal["Waterbirds", "Biased CelebA", "Backgrounds Challenge"] | None = Field(
        default=None, description="reproduce this dataset's real answer mix (sets abstain_rate and yes_bias)"
    )

    @model_validator(mode="after")
    def _mix_sets_rates(self):
        if self.answer_mix is not None and (self.abstain_rate or self.yes_bias):
            raise ValueError("answer_mix sets abstain_rate and yes_bias: give one or the other")
        return self


def uniforms(seed: int, annotator: str, item_ids: tuple[str, ...], purpose: str) -> np.ndarray:
    """``(len(item_ids),)`` deterministic draws in ``[0, 1)``, one per item."""
    out = np.empty(len(item_ids))
    prefix = f"{seed}\x00{annotator}\x00{purpose}\x00".encode()
    for i, item in enumerate(item_ids):
        digest = hashlib.blake2b(prefix + item.encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2**64
    return out


def calibrate(truth: Tensor, params: NoiseParams, target: tuple[float, float, float]) -> NoiseParams:
    """``params`` with ``abstain_rate`` and ``yes_bias`` solved so that the expected shares of
    ``(yes, maybe, no)`` on items whose truthful answers are ``truth`` equal ``target``.

    With ``c = (1 − abstain)(1 − |bias|)``, the share of answers that are truthful (after flips):
    ``maybe = abstain + c·m`` and ``no = c·n`` (bias toward yes) or ``yes = c·y`` (toward no), where
    ``y, m, n`` are the shares of the flipped truth.

    Where no rate and bias reach ``target`` exactly, the closest pair on a grid is taken if every
    share is within :data:`MIX_TOLERANCE` of it.

    Raises:
        CrayonError: no abstention rate and bias come that close to ``target``.
    """
    f = params.flip_rate
    y0, m0, n0 = (float((truth == a).double().mean()) for a in (Answer.YES, Answer.MAYBE, Answer.NO))
    y, m, n = y0 * (1 - f) + n0 * f, m0, n0 * (1 - f) + y0 * f
    yes, maybe, no = target
    for sign, truthful, wanted in ((1, n, no), (-1, y, yes)):
        c = wanted / truthful if truthful > 0 else (1.0 if wanted == 0 else np.inf)
        abstain = maybe - c * m
        if c <= 1 and 0 <= abstain < 1 and c <= 1 - abstain + 1e-12:
            bias = sign * max(0.0, 1 - c / (1 - abstain))
            return params.model_copy(update={"abstain_rate": abstain, "yes_bias": bias, "answer_mix": None})
    # no exact solution: the closest on a grid, if every share is within MIX_TOLERANCE of the target
    a, b = np.meshgrid(np.linspace(0, 1, 201), np.linspace(-1, 1, 401), indexing="ij")
    kept = (1 - a) * (1 - np.abs(b))
    shares = ((1 - a) * np.clip(b, 0, None) + kept * y, a + kept * m, (1 - a) * np.clip(-b, 0, None) + kept * n)
    error = np.max([np.abs(share - wanted) for share, wanted in zip(shares, target)], axis=0)
    best = np.unravel_index(np.argmin(error), error.shape)
    if error[best] <= MIX_TOLERANCE:
        return params.model_copy(update={"abstain_rate": float(a[best]), "yes_bias": float(b[best]), "answer_mix": None})
    raise CrayonError(
        f"{params.annotator}: answer_mix {params.answer_mix!r} (yes {yes:.3f}, maybe {maybe:.3f}, no {no:.3f}) cannot be "
        f"reached from truthful answers yes {y0:.3f}, maybe {m0:.3f}, no {n0:.3f} by abstaining and a bias"
    )


def apply_noise(truth: Tensor, item_ids: tuple[str, ...], params: NoiseParams, question: Question = Question.MAPS) -> Tensor:
    """Noisy answers to ``question`` about items whose truthful answers are ``truth`` (see
    :class:`NoiseParams`). A truthful *maybe* stays *maybe* unless biased."""
    if params.answer_mix is not None:
        params = calibrate(truth, params, REAL_ANNOTATORS[params.answer_mix].shares(question))
    draw = lambda purpose: torch.from_numpy(uniforms(params.seed, params.annotator, item_ids, purpose))  # noqa: E731
    decided = truth != Answer.MAYBE
    noisy = torch.where((draw("flip") < params.flip_rate) & decided, 1 - truth, truth)  # NO=0 ↔ YES=1
    biased = int(Answer.YES if params.yes_bias > 0 else Answer.NO)
    noisy = torch.where(draw("bias") < abs(params.yes_bias), torch.full_like(truth, biased), noisy)
    return torch.where(draw("abstain") < params.abstain_rate, torch.full_like(truth, Answer.MAYBE), noisy)


class SimulatedAnnotator(AnnotationSource):
    """The base of simulated annotators: options of :class:`NoiseParams`, so copies of one make a
    panel and its noise-free twin is the truth its answers depart from."""

    Params = NoiseParams

    def panel(self, size: int, spread: float) -> list[AnnotationSource]:
        """This annotator for a panel of one without spread, else copies of it with ids ``<id>-1`` …
        ``<id>-n`` whose flip and abstention rates are the configured ones times a factor evenly
        spaced in ``[1 − spread, 1 + spread]`` (mean factor 1)."""
        if size == 1 and spread == 0:
            return [self]
        p = self.params
        factors = np.linspace(1 - spread, 1 + spread, size) if size > 1 else np.ones(1)
        return [
            type(self)(p.model_copy(update={
                "annotator": f"{p.annotator}-{i + 1}",
                "flip_rate": min(1.0, p.flip_rate * factor),
                "abstain_rate": min(1.0, p.abstain_rate * factor),
            }))
            for i, factor in enumerate(factors)
        ]

    def noise_free(self) -> AnnotationSource:
        """A copy without flips, abstentions, yes-bias or answer mix."""
        return type(self)(self.params.model_copy(update={"flip_rate": 0.0, "abstain_rate": 0.0, "yes_bias": 0.0, "answer_mix": None}))
