"""Model selection: which epoch's weights a trainer keeps, from its validation curve."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from crayon_plugins.config import Rule
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import ConfigError
from crayon_plugins.model.classifier import Classifier

ORDER: dict[str, tuple[str, ...]] = {
    "val-wga": ("wga", "mga", "plain_accuracy"),
    "val-accuracy": ("plain_accuracy", "balanced_accuracy"),
}
"""Selection rule → the validation metrics it maximises, in order: the first is the rule's own
(``plain_accuracy``: the share of validation items predicted right, which needs no group labels);
each next one breaks the ties of those before it (``balanced_accuracy``: the mean of the classes'
accuracies, which needs no group labels either). Epochs tied on all of them: the first is kept."""

SCORE = {rule: order[0] for rule, order in ORDER.items()}
"""Selection rule → its own validation metric."""


def _value(epoch: dict[str, float], metric: str) -> float:
    """A metric of one epoch for ranking: NaN or missing ranks below everything."""
    value = epoch.get(metric, math.nan)
    return -math.inf if math.isnan(value) else value


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
    tie: dict | None = None
    """When the rule's own metric could not separate the kept epoch from others: :func:`selection_tie`'s record."""
    test: list[dict] = field(default_factory=list)
    """Per epoch, every metric on the test split, when the run reports other rules (``[selection] also``)."""

    def as_dict(self) -> dict:
        found = {"rule": self.rule, "epoch": self.chosen, "validation": self.epochs, "training": self.training}
        return found | ({"tie": self.tie} if self.tie else {}) | ({"test": self.test} if self.test else {})

    @classmethod
    def from_dict(cls, data: dict) -> Curve:
        return cls(data["rule"], data["validation"], data["epoch"], data.get("training", []), data.get("tie"), data.get("test", []))

    def under(self, rule: Rule) -> dict:
        """The epoch ``rule`` keeps from this curve and that epoch's test metrics (a lookup: needs
        :attr:`test`), with the tie record where the rule's own metric tied."""
        epoch = choose_epoch(rule, self.epochs)
        found = {"epoch": epoch, "metrics": self.test[epoch - 1]}
        return found | ({"tie": tie} if (tie := selection_tie(rule, self.epochs, epoch)) else {})


def choose_epoch(rule: Rule, epochs: list[dict[str, float]]) -> int:
    """The epoch (from 1) ``rule`` keeps: the last, or the best by the rule's metrics in
    :data:`ORDER` (its own first, then the tie-breakers; a NaN score never wins; the first of epochs
    tied on all of them). A rule whose score validation did not measure (``val-wga`` on a split
    without a group attribute) is a :class:`~crayon_plugins.errors.ConfigError`, not a comparison of NaNs."""
    if rule == "last" or not epochs:
        return len(epochs)
    if any(SCORE[rule] not in e for e in epochs):
        raise ConfigError(
            f"selection.rule = {rule!r} maximises validation {SCORE[rule]}, which the validation split does not have "
            '(the dataset has no group attribute); use rule = "val-accuracy" or "last"',
            "selection.rule",
        )
    if all(math.isnan(e[SCORE[rule]]) for e in epochs):
        return len(epochs)
    keys = [tuple(_value(e, metric) for metric in ORDER[rule]) for e in epochs]
    return keys.index(max(keys)) + 1


def selection_tie(rule: Rule, epochs: list[dict[str, float]], chosen: int) -> dict | None:
    """``None`` when the rule's own metric alone picks epoch ``chosen``; otherwise the record of the
    tie: the ``epochs`` that share its ``value`` of the rule's ``metric``, and the tie-breaker that
    ``decided_by`` (``None`` when the epochs tied on every metric of the rule and the first was kept)."""
    if rule == "last" or not epochs:
        return None
    own = SCORE[rule]
    value = _value(epochs[chosen - 1], own)
    tied = [i + 1 for i, e in enumerate(epochs) if _value(e, own) == value]
    if len(tied) < 2:
        return None
    candidates, decided_by = tied, None
    for metric in ORDER[rule][1:]:
        best = max(_value(epochs[i - 1], metric) for i in candidates)
        candidates = [i for i in candidates if _value(epochs[i - 1], metric) == best]
        if len(candidates) == 1:
            decided_by = metric
            break
    return {"metric": own, "value": epochs[chosen - 1].get(own, math.nan), "epochs": tied, "decided_by": decided_by}


@dataclass
class Selection:
    """Model selection for :func:`fit`: ``evaluate(model)`` gives validation metrics, ``rule`` picks
    the epoch. :attr:`curve` holds the last selected-over training run's :class:`Curve` (the
    pipeline reads it after each trainer)."""

    rule: Rule
    evaluate: Callable[[Classifier], dict[str, float]]
    curve: Curve | None = None
    test: Callable[[Classifier], dict] | None = None
    """With other rules to report: every metric of a model on the test split, recorded each epoch in :attr:`Curve.test`."""



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
        evaluated = self.evaluated if self.evaluated is not None else model
        self.curve.epochs.append(self.selection.evaluate(evaluated))
        if self.selection.test is not None:
            self.curve.test.append(self.selection.test(evaluated))
        model.train()
        if self.curve.rule != "last" and choose_epoch(self.curve.rule, self.curve.epochs) == len(self.curve.epochs):
            self.kept = copy.deepcopy(model.state_dict())

    def on_fit_end(self, model: Classifier) -> None:
        self.curve.chosen = choose_epoch(self.curve.rule, self.curve.epochs)
        self.curve.tie = selection_tie(self.curve.rule, self.curve.epochs, self.curve.chosen)
        if self.kept is not None and self.curve.chosen != len(self.curve.epochs):
            model.load_state_dict(self.kept)
        self.selection.curve = self.curve


def balanced_accuracy(labels: Tensor, predicted: Tensor) -> float:
    """The mean over the classes ``labels`` has of each one's accuracy (NaN without items)."""
    if not len(labels):
        return math.nan
    return float(torch.stack([(predicted[labels == c] == c).double().mean() for c in labels.unique()]).mean())


def validation_metrics(val: ImageSet, predicted: Tensor, train_shares: Tensor) -> dict[str, float]:
    """``wga``, ``mga`` and ``accuracy`` (in-distribution: group accuracies weighted by the training
    set's group shares), which use the validation group labels, and ``plain_accuracy`` and
    ``balanced_accuracy`` (the mean of the classes' accuracies), which do not, of ``predicted``
    classes of the validation split. Without a group attribute there is no ``wga`` or ``mga``:
    ``worst_class_accuracy``, and ``accuracy`` is plain accuracy."""
    plain = val.accuracy(predicted)
    balanced = balanced_accuracy(val.labels, predicted.cpu())
    if not val.has_groups:
        worst = val.group_summary(predicted)["worst_class_accuracy"]
        return {"worst_class_accuracy": worst, "accuracy": plain, "plain_accuracy": plain, "balanced_accuracy": balanced}
    summary = val.group_summary(predicted)
    return {"wga": summary["wga"], "mga": summary["mga"], "accuracy": val.in_distribution_accuracy(predicted, train_shares), "plain_accuracy": plain, "balanced_accuracy": balanced}
