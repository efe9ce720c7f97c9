"""The seeded noise model of simulated annotators: abstentions and flipped answers.

Every random draw is a hash of ``(seed, annotator, item id, purpose)``, so an item's noise does not
depend on which other items are annotated or in what order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from crayon_plugins.components import Params
from crayon_plugins.data import Answer


class NoiseParams(Params):
    """Options every oracle shares: who it is and how it errs."""

    annotator: str = Field(default="oracle", min_length=1, description="id written on every answer")
    seed: int = 0
    flip_rate: float = Field(default=0.0, ge=0, le=1, description="P(yes ↔ no) for an answer not abstained")
    abstain_rate: float = Field(default=0.0, ge=0, le=1, description="P(answer maybe instead)")


def uniforms(seed: int, annotator: str, item_ids: tuple[str, ...], purpose: str) -> np.ndarray:
    """``(len(item_ids),)`` deterministic draws in ``[0, 1)``, one per item."""
    out = np.empty(len(item_ids))
    prefix = f"{seed}\x00{annotator}\x00{purpose}\x00".encode()
    for i, item in enumerate(item_ids):
        digest = hashlib.blake2b(prefix + item.encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2**64
    return out


def apply_noise(truth: Tensor, item_ids: tuple[str, ...], params: NoiseParams) -> Tensor:
    """Noisy answers: each abstains (→ maybe) with ``abstain_rate``; otherwise yes / no answers flip
    with ``flip_rate``. A truthful *maybe* stays *maybe*."""
    abstain = torch.from_numpy(uniforms(params.seed, params.annotator, item_ids, "abstain") < params.abstain_rate)
    flip = torch.from_numpy(uniforms(params.seed, params.annotator, item_ids, "flip") < params.flip_rate)
    decided = truth != Answer.MAYBE
    noisy = torch.where(flip & decided, 1 - truth, truth)  # NO=0 ↔ YES=1
    return torch.where(abstain, torch.full_like(truth, Answer.MAYBE), noisy)
