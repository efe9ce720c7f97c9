"""CRAYON-Attention's energy loss (DESIGN.md, "The methods").

``P`` is the original model's normalised map of an image, ``E`` the current model's. For an image
annotated *no*, ``L_no = Σ(E·P) / Σ(P)`` (attention still where the original looked); for *yes*,
``L_yes = Σ(E·(1−P)) / Σ(1−P)`` (attention outside where it looked); *maybe* adds nothing. With
maps in ``[0, 1]`` both terms lie in ``[0, 1]``. Maps are max-normalised before the loss (as every
interpreter returns them), which makes both terms invariant to positive rescaling of either map
whose maximum is far above :data:`~crayon_plugins.maps.EPS`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import Answer
from .maps import EPS


def energy_no(current: Tensor, original: Tensor) -> Tensor:
    """``(B,)`` ``L_no`` per image for ``(B, h, w)`` maps."""
    return (current * original).sum(dim=(-2, -1)) / (original.sum(dim=(-2, -1)) + EPS)


def energy_yes(current: Tensor, original: Tensor) -> Tensor:
    """``(B,)`` ``L_yes`` per image for ``(B, h, w)`` maps."""
    outside = 1.0 - original
    return (current * outside).sum(dim=(-2, -1)) / (outside.sum(dim=(-2, -1)) + EPS)


def crayon_attention_loss(
    logits: Tensor,
    labels: Tensor,
    current: Tensor,
    original: Tensor,
    answers: Tensor,
    alpha: float,
    beta: float,
) -> Tensor:
    """Summed cross-entropy ``+ α/n_no·ΣL_no + β/n_yes·ΣL_yes`` over one minibatch.

    ``answers`` holds an :class:`~crayon_plugins.data.Answer` code per image (any other code, such as
    *not annotated*, adds no attention term); ``n_no`` and ``n_yes`` count the minibatch's *no* and
    *yes* answers, and a term whose count is zero is left out.
    """
    loss = F.cross_entropy(logits, labels, reduction="sum")
    no, yes = answers == Answer.NO, answers == Answer.YES
    if no.any():
        loss = loss + alpha / no.sum() * energy_no(current[no], original[no]).sum()
    if yes.any():
        loss = loss + beta / yes.sum() * energy_yes(current[yes], original[yes]).sum()
    return loss
