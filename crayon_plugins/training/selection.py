"""Model selection: which epoch's weights a trainer keeps, from its validation curve."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from crayon_plugins.config import Rule
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import ConfigError
from crayon_plugins.model.classifier import Classifier

SCORE = {"val-wga": "wga", "val-accuracy": "plain_accuracy"}
"""Selection rule → the validation metric it maximises (``plain_accuracy``: the share of validation
items predicted right, which needs no group labels)."""


@dataclass
class Curve:
    """What one training run measured on validation: per epoch (from 1) a dict of metrics
    (``wga``, ``mga``, ``accuracy`` in-distribution, ``plain_accuracy``; ``worst_class_accuracy``
    instead of ``wga`` and ``mga`` without a group attribute), and the epoch whose weights were kept."""

    rule: Rule
    epochs: list[dict[str, float]] = field(default_factory=list)
    chosen: int = 0
    training: list[dict[str, float]] = field(default_factory=list)
    """Per epoch, the training loss log (:func:`~crayon_plugins.training.loop.fit`'s)."""

    def as_dict(self) -> dict:
        return {"rule": self.rule, "epoch": self.chosen, "validation": self.epochs, "training": self.training}

    @classmethod
    def from_dict(cls, data: dict) -> Curve:
        return cls(data["rule"], data["validation"], data["epoch"], data.get("training", []))


def choose_epoch(rule: Rule, epochs: list[dict[str, float]]) -> int:
    """The epoch (from 1) ``rule`` keeps: the last, or the first with the highest score (a NaN
    score never wins). A rule whose score validation did not measure (``val-wga`` on a split
    without a group attribute) is a :class:`~crayon_plugins.errors.ConfigError`, not a comparison of NaNs."""
    if rule == "last" or not epochs:
        return len(epochs)
    if any(SCORE[rule] not in e for e in epochs):
        raise ConfigError(
            f"selection.rule = {rule!r} maximises validation {SCORE[rule]}, which the validation split does not have "
            '(the dataset has no group attribute); use rule = "val-accuracy" or "last"',
            "selection.rule",
        )
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



class KeepBestEpoch:
    """The observer of :func:`~crayon_plugins.training.loop.fit` that selects an epoch: after every
    epoch it evaluates ``evaluated`` (the model trained, or the whole classifier it is a part of) on
    validation and keeps the weights of the best epoch so far; at the end it restores the epoch the
    rule picks and leaves the :class:`Curve` in ``selection.curve`` (Lightning's ``ModelCheckpoint``)."""

    def __init__(self, selection: Selection, evaluated: Classifier | None = None) -> None:
        self.selection, self.evaluated = selection, evaluated
        self.curve = Curve(selection.rule)
        self.kept: dict[str, Tensor] | None = None

    def on_epoch_end(self, epoch: int, model: Classifier, log: dict[str, float]) -> None:
        self.curve.training.append(log)
        model.eval()
        self.curve.epochs.append(self.selection.evaluate(self.evaluated if self.evaluated is not None else model))
        model.train()
        if self.curve.rule != "last" and choose_epoch(self.curve.rule, self.curve.epochs) == len(self.curve.epochs):
            self.kept = copy.deepcopy(model.state_dict())

    def on_fit_end(self, model: Classifier) -> None:
        self.curve.chosen = choose_epoch(self.curve.rule, self.curve.epochs)
        if self.kept is not None and self.curve.chosen != len(self.curve.epochs):
            model.load_state_dict(self.kept)
        self.selection.curve = self.curve


def validation_metrics(val: ImageSet, predicted: Tensor, train_shares: Tensor) -> dict[str, float]:
    """``wga``, ``mga`` and ``accuracy`` (in-distribution: group accuracies weighted by the training
    set's group shares), which use the validation group labels, and ``plain_accuracy``, which does
    not, of ``predicted`` classes of the validation split. Without a group attribute there is no
    ``wga`` or ``mga``: ``worst_class_accuracy``, and ``accuracy`` is plain accuracy."""
    plain = val.accuracy(predicted)
    if not val.has_groups:
        return {"worst_class_accuracy": val.group_summary(predicted)["worst_class_accuracy"], "accuracy": plain, "plain_accuracy": plain}
    summary = val.group_summary(predicted)
    return {"wga": summary["wga"], "mga": summary["mga"], "accuracy": val.in_distribution_accuracy(predicted, train_shares), "plain_accuracy": plain}

