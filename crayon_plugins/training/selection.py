"""Model selection: which epoch's weights a trainer keeps, from its validation curve."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.model.classifier import Classifier

Rule = Literal["last", "val-wga", "val-accuracy"]
"""Which epoch's weights a trainer keeps: the last (as the CRAYON code does), or the one with the
best validation worst-group accuracy (Group DRO, JtT, DFR) or validation accuracy (no group labels)."""


SCORE = {"val-wga": "wga", "val-accuracy": "plain_accuracy"}
"""Selection rule → the validation metric it maximises (``plain_accuracy``: the share of validation
items predicted right, which needs no group labels)."""


@dataclass
class Curve:
    """What one training run measured on validation: per epoch (from 1) a dict of metrics
    (``wga``, ``mga``, ``accuracy`` in-distribution, ``plain_accuracy``), and the epoch whose
    weights were kept."""

    rule: Rule
    epochs: list[dict[str, float]] = field(default_factory=list)
    chosen: int = 0

    def as_dict(self) -> dict:
        return {"rule": self.rule, "epoch": self.chosen, "validation": self.epochs}


def choose_epoch(rule: Rule, epochs: list[dict[str, float]]) -> int:
    """The epoch (from 1) ``rule`` keeps: the last, or the first with the highest score (a NaN
    score never wins)."""
    if rule == "last" or not epochs:
        return len(epochs)
    scores = [e[SCORE[rule]] for e in epochs]
    best = max((s for s in scores if not math.isnan(s)), default=None)
    return len(epochs) if best is None else scores.index(best) + 1


@dataclass
class Selection:
    """Model selection for :func:`fit`: ``evaluate(model)`` gives validation metrics, ``rule`` picks
    the epoch. :attr:`curve` holds the last selected-over training run's :class:`Curve` (the
    pipeline reads it after each trainer)."""

    rule: Rule
    evaluate: Callable[[Classifier], dict[str, float]]
    curve: Curve | None = None


def validation_metrics(val: ImageSet, predicted: Tensor, train_shares: Tensor) -> dict[str, float]:
    """``wga``, ``mga`` and ``accuracy`` (in-distribution: group accuracies weighted by the training
    set's group shares), which use the validation group labels, and ``plain_accuracy``, which does
    not, of ``predicted`` classes of the validation split."""
    summary = val.group_summary(predicted)
    plain = float((predicted == val.labels).double().mean())
    return {"wga": summary["wga"], "mga": summary["mga"], "accuracy": val.in_distribution_accuracy(predicted, train_shares), "plain_accuracy": plain}

