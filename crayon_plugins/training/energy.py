"""CRAYON-Attention's energy loss, as the public CRAYON code computes it (``docs/methods.md``).

``P`` is the original model's map of an image, ``E`` the current model's, each normalised as the
code does, ``(ε + x) / max(ε + x)`` with ``ε`` = :data:`EPS_BEFORE_MAX`: an all-zero map becomes all
ones, so a model cannot escape the loss by switching its Grad-CAM off. For an image annotated *no*,
``L_no = Σ(E·P) / Σ(P)`` (attention still where the original looked); for *yes*,
``L_yes = Σ(E·(1−P)) / Σ(1−P)`` (attention outside where it looked); *maybe* adds nothing. Both terms
lie in ``[0, 1]``. The minibatch loss (``crayon-attention``'s) is the summed cross-entropy plus ``w_yes/N_yes · Σ L_yes`` and
``w_no/N_no · Σ L_no`` over its images, where ``N_yes`` and ``N_no`` count the answers of the **whole**
annotation set (``w_no / num_no`` in the code's ``src/solver/solver_waterbirds.py``). The paper's α is
``w_yes`` and its β is ``w_no``: the authors' scripts pass them as ``--w_yes`` and ``--w_no``.

A *yes* image whose original map is all zero has ``P ≡ 1`` and ``Σ(1−P) = 0``: the public code would
divide by zero; its ``L_yes`` is left out (:func:`degenerate_yes` counts such images for the run's
statistics).

A variant, not the published method (``crayon-attention``'s ``energy = "mass"``): the same terms
divided by the current map's own sum instead of ``P``'s, ``L_no = Σ(E·P) / Σ(E)`` (the share of the
current map's mass where the original looked, each cell weighted by ``P``) and
``L_yes = Σ(E·(1−P)) / Σ(E)`` (its share outside). Under the max normalisation a map that narrows to
one cell lowers the published ``L_no`` without leaving ``P``; a share of mass falls only when mass
moves to cells of lower ``P``.
"""

from __future__ import annotations

from torch import Tensor

from crayon_plugins.annotation.records import Answer

EPS_BEFORE_MAX = 1e-10
"""CRAYON's ε, added to a map before dividing by its maximum."""


def crayon_normalise(maps: Tensor) -> Tensor:
    """``(B, h, w)`` non-negative maps → ``(ε + x) / max(ε + x)`` per map (all-zero → all ones)."""
    shifted = maps + EPS_BEFORE_MAX
    return shifted / shifted.amax(dim=(-2, -1), keepdim=True)


def energy_no(current: Tensor, original: Tensor) -> Tensor:
    """``(B,)`` ``L_no = Σ(E·P)/Σ(P)`` per image for ``(B, h, w)`` maps normalised as CRAYON does."""
    return (current * original).sum(dim=(-2, -1)) / original.sum(dim=(-2, -1))


def energy_yes(current: Tensor, original: Tensor) -> Tensor:
    """``(B,)`` ``L_yes = Σ(E·(1−P))/Σ(1−P)`` per image; ``0`` where ``Σ(1−P) = 0`` (an all-zero
    original map), which adds no term."""
    outside = 1.0 - original
    total = outside.sum(dim=(-2, -1))
    held = total > 0
    return (current * outside).sum(dim=(-2, -1)) / total.where(held, 1.0) * held


def energy_no_mass(current: Tensor, original: Tensor) -> Tensor:
    """``(B,)`` ``L_no = Σ(E·P)/Σ(E)`` per image: the share of ``E``'s mass on ``P`` (the ``"mass"`` variant)."""
    return (current * original).sum(dim=(-2, -1)) / current.sum(dim=(-2, -1))


def energy_yes_mass(current: Tensor, original: Tensor) -> Tensor:
    """``(B,)`` ``L_yes = Σ(E·(1−P))/Σ(E)`` per image: the share of ``E``'s mass off ``P`` (the ``"mass"``
    variant); ``0`` for an all-zero original map (``P ≡ 1``), like :func:`energy_yes`."""
    return (current * (1.0 - original)).sum(dim=(-2, -1)) / current.sum(dim=(-2, -1))


ENERGIES = {"crayon": (energy_no, energy_yes), "mass": (energy_no_mass, energy_yes_mass)}
"""The terms (``L_no``, ``L_yes``) of each ``energy``: the published ones, and the mass-share variant."""


def degenerate_yes(original: Tensor, answers: Tensor) -> int:
    """How many *yes* images have an all-zero original map (their ``L_yes`` is left out)."""
    zero = original.flatten(1).amax(dim=1) <= 0
    return int((zero & (answers == Answer.YES)).sum())


def attention_parts(
    current: Tensor, original: Tensor, answers: Tensor, *, w_yes: float, w_no: float, n_yes: int, n_no: int, energy: str = "crayon"
) -> dict[str, Tensor]:
    """The two terms of :func:`attention_terms`, each present only where it adds something:
    ``energy_yes`` = ``w_yes/N_yes · Σ L_yes`` and ``energy_no`` = ``w_no/N_no · Σ L_no`` over the
    minibatch, with the terms of ``energy`` (:data:`ENERGIES`)."""
    if energy not in ENERGIES:
        raise ValueError(f"energy must be one of {sorted(ENERGIES)}, not {energy!r}")
    no_term, yes_term = ENERGIES[energy]
    current, original = crayon_normalise(current), crayon_normalise(original)
    no, yes = answers == Answer.NO, answers == Answer.YES
    parts = {}
    if n_no and no.any():
        parts["energy_no"] = w_no / n_no * no_term(current[no], original[no]).sum()
    if n_yes and yes.any():
        parts["energy_yes"] = w_yes / n_yes * yes_term(current[yes], original[yes]).sum()
    return parts


def attention_terms(
    current: Tensor, original: Tensor, answers: Tensor, *, w_yes: float, w_no: float, n_yes: int, n_no: int, energy: str = "crayon"
) -> Tensor:
    """``w_yes/N_yes · Σ L_yes + w_no/N_no · Σ L_no`` over one minibatch.

    The CRAYON paper calls ``w_yes`` α and ``w_no`` β (its code passes them as ``--w_yes`` and
    ``--w_no``). ``current`` and ``original`` are ``(B, h, w)`` non-negative maps (normalised here);
    ``answers`` holds an :class:`~crayon_plugins.annotation.records.Answer` code per image (any other code, such
    as *not annotated*, adds nothing); ``n_yes`` and ``n_no`` count the *yes* and *no* answers of the
    whole annotation set (a term whose count is zero adds nothing). ``energy`` picks the published
    terms (``"crayon"``) or the mass-share variant (``"mass"``).
    """
    total = current.new_zeros(())
    for part in attention_parts(current, original, answers, w_yes=w_yes, w_no=w_no, n_yes=n_yes, n_no=n_no, energy=energy).values():
        total = total + part
    return total
