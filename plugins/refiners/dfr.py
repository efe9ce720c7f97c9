"""``dfr``: Deep Feature Reweighting (Kirichenko, Izmailov & Wilson, "Last Layer Re-Training is
Sufficient for Robustness to Spurious Correlations", ICLR 2023), the group-label reference for
``crayon-pruning``, which also retrains only the last layer.

As the public code does it (PolinaKirichenko/deep_feature_reweighting, ``dfr_evaluate_spurious.py``):
the original model's penultimate features (pooled, eval mode) of the **validation** split, with its
group labels; an L1-regularised logistic regression (scikit-learn, ``liblinear``) on standardised
features. Tuning: the validation split is shuffled and halved, the first half sub-sampled to its
smallest group (:func:`balanced_half`), and the inverse regularisation ``C`` is chosen by worst-group
accuracy on the other half. Then the regression is fitted ``retrains`` times on the whole validation
split, each time re-balanced by a fresh sub-sample, with features standardised by the training
split's statistics, and the coefficients are averaged into the model's classifier.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from pydantic import Field, PositiveInt
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from crayon_plugins.api import Classifier, CrayonError, Need, Params, RefinementContext, Refiner, hookimpl


def balanced(indices: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``indices`` sub-sampled to the size of their smallest group, every group equally often."""
    present = [indices[groups[indices] == g] for g in np.unique(groups[indices])]
    smallest = min(len(members) for members in present)
    return np.sort(np.concatenate([rng.permutation(members)[:smallest] for members in present]))


def balanced_half(n: int, groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DFR's tuning split of ``n`` validation items: ``(balanced training half, held-out half)``; the
    shuffled items' second half, sub-sampled to its smallest group, and the first half."""
    order = rng.permutation(n)
    held_out, rest = order[: n // 2], order[n // 2 :]
    return balanced(rest, groups, rng), np.sort(held_out)


def worst_group_accuracy(predicted: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    return min(float((predicted[groups == g] == labels[groups == g]).mean()) for g in np.unique(groups))


class DeepFeatureReweighting(Refiner):
    """Retrain the last layer on group-balanced validation features (group labels needed)."""

    needs = frozenset({Need.GROUPS})

    class Params(Params):
        c_grid: tuple[float, ...] = Field(default=(1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01), min_length=1, description="candidate inverse regularisation strengths C (the public code's Waterbirds grid)")
        retrains: PositiveInt = Field(default=20, description="balanced re-fits averaged into the classifier")

    def fit_regression(self, features: np.ndarray, labels: np.ndarray, c: float, scaler: StandardScaler, seed: int) -> LogisticRegression:
        regression = LogisticRegression(C=c, l1_ratio=1.0, solver="liblinear", random_state=seed)
        return regression.fit(scaler.transform(features), labels)

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        val = context.val
        if val is None:
            raise CrayonError(f"refiner {self.name!r} retrains on the validation split, and the refinement context has none")
        if missing := val.missing_groups():
            raise CrayonError(f"refiner {self.name!r} needs every group in the validation split to balance it; it has no item of {', '.join(missing)}")
        groups = val.groups.numpy()
        features = context.penultimate(model, "val").double().numpy()
        labels = val.labels.numpy()
        rng = np.random.default_rng(context.seed)

        fitted, held_out = balanced_half(len(val), groups, rng)
        scaler = StandardScaler().fit(features[fitted])
        scores = []
        for c in self.params.c_grid:
            regression = self.fit_regression(features[fitted], labels[fitted], c, scaler, context.seed)
            predicted = regression.predict(scaler.transform(features[held_out]))
            scores.append(worst_group_accuracy(predicted, labels[held_out], groups[held_out]))
        best = self.params.c_grid[int(np.argmax(scores))]

        scaler = StandardScaler().fit(context.penultimate(model).double().numpy())
        every = np.arange(len(val))
        coef, intercept = 0.0, 0.0
        for _ in range(self.params.retrains):
            chosen = balanced(every, groups, rng)
            regression = self.fit_regression(features[chosen], labels[chosen], best, scaler, context.seed)
            coef, intercept = coef + regression.coef_, intercept + regression.intercept_
        coef, intercept = coef / self.params.retrains, intercept / self.params.retrains
        return self.into_classifier(model, coef, intercept, scaler)

    def into_classifier(self, model: Classifier, coef: np.ndarray, intercept: np.ndarray, scaler: StandardScaler) -> Classifier:
        """A copy of ``model`` whose classifier computes the regression on unstandardised features;
        a binary regression's one row becomes logits ``(0, w·x + b)``."""
        weight = coef / scaler.scale_
        bias = intercept - weight @ scaler.mean_
        if weight.shape[0] == 1:
            weight, bias = np.concatenate([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
        refined = copy.deepcopy(model)
        with torch.no_grad():
            refined.classifier.weight.copy_(torch.as_tensor(weight, dtype=refined.classifier.weight.dtype))
            refined.classifier.bias.copy_(torch.as_tensor(bias, dtype=refined.classifier.bias.dtype))
        return refined


@hookimpl
def crayon_refiners():
    return {"dfr": DeepFeatureReweighting}
