"""Accuracy metrics over groups (label × spurious attribute).

``accuracy`` is the *in-distribution* accuracy: per-group test accuracies weighted by each group's
share of the training set (the Group DRO convention). On a group-balanced test set it differs from
plain accuracy, which would score a pure shortcut model at only 50 %.

Every group of ``class × attribute`` is reported; a group with no item in the split is ``None``
(``null`` in ``results.json``), and ``groups_measured`` of ``groups_total`` says over how many groups
WGA and MGA were taken.

On a dataset without a group attribute (``ImageSet.has_groups`` false: an ``image-folder``, a ``csv``
table without a group column) WGA and MGA are not measured: ``group-accuracy`` reports
``class_accuracy`` (each class's accuracy), ``worst_class_accuracy`` and plain ``accuracy`` instead,
and ``accuracy`` is plain accuracy (there are no group shares to weigh by).
"""

from __future__ import annotations

from crayon_plugins.api import Metric, Predictions, hookimpl


class InDistributionAccuracy(Metric):
    """``accuracy``: Σ_g (train share of g) × (accuracy on g), over groups present in the split;
    plain accuracy without a group attribute."""

    def compute(self, predictions: Predictions) -> dict[str, float]:
        return {"accuracy": predictions.split.in_distribution_accuracy(predictions.predicted, predictions.train_group_shares)}


class GroupAccuracy(Metric):
    """``wga`` (worst-group) and ``mga`` (mean-group) accuracy over the groups the split has,
    ``groups`` (each group's, ``None`` where empty), and ``groups_measured`` of ``groups_total``;
    without a group attribute ``class_accuracy``, ``worst_class_accuracy`` and ``accuracy`` instead."""

    def compute(self, predictions: Predictions) -> dict[str, float | dict[str, float | None]]:
        return predictions.split.group_summary(predictions.predicted)


@hookimpl
def crayon_metrics():
    return {"accuracy": InDistributionAccuracy, "group-accuracy": GroupAccuracy}
