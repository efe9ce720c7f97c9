"""The Backgrounds Challenge's metrics (Xiao et al., 2021), as fractions in [0, 1].

``mr``: accuracy on ``mixed_rand`` (each foreground on the background of a random class).
``bg_gap``: accuracy on ``mixed_same`` minus accuracy on ``mixed_rand``; how much the model's
decisions depend on the background's class (lower is better). Both read the model's predictions on
the dataset's evaluation splits (:attr:`~crayon_plugins.api.components.Predictions.others`).
"""

from __future__ import annotations

import math

from crayon_plugins.api import CrayonError, Metric, Need, Predictions, hookimpl


class SplitAccuracies(Metric):
    """Base: the accuracy of the model on each evaluation split it names in ``evaluation_splits``."""

    needs = frozenset({Need.EVALUATION_SPLITS})

    def accuracies(self, predictions: Predictions) -> dict[str, float]:
        """Split name → accuracy (NaN on an empty split); a clear error for a split the run lacks."""
        found = {}
        for split in self.evaluation_splits:
            if split not in predictions.others:
                have = ", ".join(predictions.others) or "none"
                raise CrayonError(
                    f"metric {self.name!r} needs predictions on the evaluation split {split!r} (the Backgrounds "
                    f"Challenge's: dataset 'backgrounds-challenge'); this run's dataset has: {have}"
                )
            other = predictions.others[split]
            correct = other.predicted == other.split.labels
            found[split] = float(correct.double().mean()) if len(correct) else math.nan
        return found


class MixedRandAccuracy(SplitAccuracies):
    """``mr``: accuracy on ``mixed_rand``."""

    evaluation_splits = ("mixed_rand",)

    def compute(self, predictions: Predictions) -> dict[str, float]:
        return {"mr": self.accuracies(predictions)["mixed_rand"]}


class BackgroundGap(SplitAccuracies):
    """``bg_gap``: accuracy on ``mixed_same`` minus accuracy on ``mixed_rand``."""

    evaluation_splits = ("mixed_same", "mixed_rand")

    def compute(self, predictions: Predictions) -> dict[str, float]:
        found = self.accuracies(predictions)
        return {"bg_gap": found["mixed_same"] - found["mixed_rand"]}


@hookimpl
def crayon_metrics():
    return {"mr": MixedRandAccuracy, "bg-gap": BackgroundGap}
