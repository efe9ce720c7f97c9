"""Accuracy metrics over groups (label × spurious attribute).

``accuracy`` is the *in-distribution* accuracy: per-group test accuracies weighted by each group's
share of the training set (the Group DRO convention). On a group-balanced test set it differs from
plain accuracy, which would score a pure shortcut model at only 50 %.

Every group of ``class × attribute`` is reported; a group with no item in the split is ``None``
(``null`` in ``results.json``), and ``groups_measured`` of ``groups_total`` says over how many groups
WGA and MGA were taken.
"""

from __future__ import annotations

import math

import torch

from crayon_plugins.api import Metric, Predictions, hookimpl


def group_accuracies(predictions: Predictions) -> dict[str, float | None]:
    """Accuracy per group, keyed by group name; ``None`` for a group with no item in the split."""
    split = predictions.split
    correct = (predictions.predicted == split.labels).double()
    groups = split.groups
    out = {}
    for index, name in enumerate(split.group_names):
        members = groups == index
        out[name] = float(correct[members].mean()) if members.any() else None
    return out


class InDistributionAccuracy(Metric):
    """``accuracy``: Σ_g (train share of g) × (accuracy on g), over groups present in the split."""

    def compute(self, predictions: Predictions) -> dict[str, float]:
        accuracies = {k: v for k, v in group_accuracies(predictions).items() if v is not None}
        names = predictions.split.group_names
        shares = {name: float(predictions.train_group_shares[i]) for i, name in enumerate(names)}
        weight = sum(shares[name] for name in accuracies)
        if weight == 0:
            return {"accuracy": math.nan}
        return {"accuracy": sum(shares[name] * acc for name, acc in accuracies.items()) / weight}


class GroupAccuracy(Metric):
    """``wga`` (worst-group) and ``mga`` (mean-group) accuracy over the groups the split has,
    ``groups`` (each group's, ``None`` where empty), and ``groups_measured`` of ``groups_total``."""

    def compute(self, predictions: Predictions) -> dict[str, float | dict[str, float | None]]:
        accuracies = group_accuracies(predictions)
        values = torch.tensor([v for v in accuracies.values() if v is not None], dtype=torch.float64)
        wga, mga = (float(values.min()), float(values.mean())) if len(values) else (math.nan, math.nan)
        return {"wga": wga, "mga": mga, "groups": accuracies, "groups_measured": len(values), "groups_total": len(accuracies)}


@hookimpl
def crayon_metrics():
    return {"accuracy": InDistributionAccuracy, "group-accuracy": GroupAccuracy}
