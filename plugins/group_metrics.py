"""Accuracy metrics over groups (label × spurious attribute).

``accuracy`` is the *in-distribution* accuracy: per-group test accuracies weighted by each group's
share of the training set (the Group DRO convention). On a group-balanced test set it differs from
plain accuracy, which would score a pure shortcut model at only 50 %.
"""

from __future__ import annotations

import math

import torch

from crayon_plugins.components import Metric, Predictions
from crayon_plugins.hookspecs import hookimpl


def group_accuracies(predictions: Predictions) -> dict[str, float]:
    """Accuracy per group present in the split, keyed by group name."""
    split = predictions.split
    correct = (predictions.predicted == split.labels).double()
    groups = split.groups
    out = {}
    for index, name in enumerate(split.group_names):
        members = groups == index
        if members.any():
            out[name] = float(correct[members].mean())
    return out


class InDistributionAccuracy(Metric):
    """``accuracy``: Σ_g (train share of g) × (accuracy on g), over groups present in the split."""

    def compute(self, predictions: Predictions) -> dict[str, float]:
        accuracies = group_accuracies(predictions)
        names = predictions.split.group_names
        shares = {name: float(predictions.train_group_shares[i]) for i, name in enumerate(names)}
        weight = sum(shares[name] for name in accuracies)
        if weight == 0:
            return {"accuracy": math.nan}
        return {"accuracy": sum(shares[name] * acc for name, acc in accuracies.items()) / weight}


class GroupAccuracy(Metric):
    """``wga`` (worst-group), ``mga`` (mean-group) and ``groups`` (each group's) accuracy."""

    def compute(self, predictions: Predictions) -> dict[str, float | dict[str, float]]:
        accuracies = group_accuracies(predictions)
        values = torch.tensor(list(accuracies.values()), dtype=torch.float64)
        return {"wga": float(values.min()), "mga": float(values.mean()), "groups": accuracies}


@hookimpl
def crayon_metrics():
    return {"accuracy": InDistributionAccuracy, "group-accuracy": GroupAccuracy}
