"""Validation after every epoch, model selection, and several seeds' mean ± std in the tables."""

import math

import pytest
import torch
import torch.nn.functional as F

from crayon_plugins.config import Optimisation
from crayon_plugins.run.results import ResultRow, Results, mean_and_std
from crayon_plugins.run.table import best_row, markdown_table
from crayon_plugins.testing.tiny import tiny_image_set, tiny_model
from crayon_plugins.training.loop import fit
from crayon_plugins.training.selection import Selection, choose_epoch, selection_tie

CURVE = [
    {"wga": 0.2, "mga": 0.5, "plain_accuracy": 0.9},
    {"wga": 0.6, "mga": 0.8, "plain_accuracy": 0.8},
    {"wga": 0.6, "mga": 0.7, "plain_accuracy": 0.95},
    {"wga": 0.4, "mga": 0.6, "plain_accuracy": 0.7},
]


def test_selection_picks_the_argmax_epoch_of_a_hand_made_curve():
    assert choose_epoch("last", CURVE) == 4
    assert choose_epoch("val-wga", CURVE) == 2  # tied on WGA with epoch 3, ahead on MGA
    assert choose_epoch("val-accuracy", CURVE) == 3
    assert choose_epoch("val-wga", [{"wga": math.nan}, {"wga": 0.1}]) == 2  # NaN never wins


def test_a_tie_on_the_rules_own_metric_is_broken_by_the_stated_next_metric_and_recorded():
    assert selection_tie("val-wga", CURVE, 2) == {"metric": "wga", "value": 0.6, "epochs": [2, 3], "decided_by": "mga"}
    assert selection_tie("val-accuracy", CURVE, 3) is None  # 0.95 alone
    assert selection_tie("last", CURVE, 4) is None
    # A validation WGA of 0 at every epoch (no epoch gets the worst group right): MGA, then accuracy, decide.
    flat = [{"wga": 0.0, "mga": 0.41, "plain_accuracy": 0.5}, {"wga": 0.0, "mga": 0.54, "plain_accuracy": 0.6}, {"wga": 0.0, "mga": 0.54, "plain_accuracy": 0.7}]
    assert choose_epoch("val-wga", flat) == 3
    assert selection_tie("val-wga", flat, 3) == {"metric": "wga", "value": 0.0, "epochs": [1, 2, 3], "decided_by": "plain_accuracy"}
    # Tied on every metric of the rule: the first is kept, and the record says nothing decided.
    same = [{"plain_accuracy": 0.5, "balanced_accuracy": 0.5}] * 3
    assert choose_epoch("val-accuracy", same) == 1
    assert selection_tie("val-accuracy", same, 1) == {"metric": "plain_accuracy", "value": 0.5, "epochs": [1, 2, 3], "decided_by": None}


def test_the_table_says_which_rows_were_kept_by_a_tie_breaker():
    tie = {"metric": "wga", "value": 0.0, "epochs": [1, 2, 3], "decided_by": "mga"}
    rows = [
        ResultRow(method="original", metrics={"wga": 0.1}, selection=[{"seed": 0, "rule": "val-wga", "epoch": 2, "validation": [], "tie": tie}]),
        ResultRow(method="finetune", metrics={"wga": 0.2}, selection=[{"seed": 0, "rule": "val-wga", "epoch": 3, "validation": []}]),
    ]
    text = markdown_table(Results(dataset="d", backbone="b", seed=0, rows=rows))
    assert "The selection rule's own metric tied: original kept epoch 2 of epochs 1, 2, 3, tied at 0.0 % validation WGA, by validation MGA." in text
    assert "finetune kept" not in text


def test_fit_keeps_the_weights_of_the_chosen_epoch():
    """A validation score that peaks at epoch 2 of 4: the model ends with epoch 2's weights, which
    the evaluation saw, and the curve records every epoch."""
    model, train = tiny_model(0), tiny_image_set(n=16)
    seen = []

    def evaluate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return CURVE[len(seen) - 1]

    def batch_loss(indices, images):
        return F.cross_entropy(model(images), train.labels[indices])

    selection = Selection("val-wga", evaluate)
    curve = fit(model, batch_loss, len(train), Optimisation(epochs=4, lr=1e-2, batch_size=8), 0, "test", selection=selection, images=train.images)
    assert curve is selection.curve and curve.chosen == 2 and curve.epochs == CURVE
    assert curve.as_dict()["tie"]["decided_by"] == "mga"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in seen[1].items())
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in seen[3].items())


def test_fit_tells_its_observers_each_epoch_and_the_end_after_keeping_the_chosen_epoch():
    model, train = tiny_model(0), tiny_image_set(n=16)
    heard = []

    class Recorder:
        def on_epoch_end(self, epoch, m, log):
            heard.append(("epoch", epoch, m.training))

        def on_fit_end(self, m):
            heard.append(("end", len(heard), m.training))

    selection = Selection("val-wga", lambda m: CURVE[sum(1 for h in heard if h[0] == "epoch")])
    loss = lambda i, x: F.cross_entropy(model(x), train.labels[i])  # noqa: E731
    fit(model, loss, len(train), Optimisation(epochs=4, lr=1e-2, batch_size=8), 0, "test", selection=selection, images=train.images, observers=[Recorder()])
    assert heard == [("epoch", 1, True), ("epoch", 2, True), ("epoch", 3, True), ("epoch", 4, True), ("end", 4, True)]
    assert selection.curve.chosen == 2 and not model.training


def test_mean_and_std_over_seeds_of_nested_metrics():
    mean, std = mean_and_std([{"wga": 0.5, "groups": {"a": 0.2}, "name": "x"}, {"wga": 0.7, "groups": {"a": 0.4}, "name": "y"}])
    assert set(mean) == {"wga", "groups"} and mean["wga"] == pytest.approx(0.6) and mean["groups"]["a"] == pytest.approx(0.3)
    assert std["wga"] == pytest.approx(math.sqrt(0.02)) and std["groups"]["a"] == pytest.approx(math.sqrt(0.02))
    nan_mean, _ = mean_and_std([{"wga": 0.5}, {"wga": math.nan}])
    assert math.isnan(nan_mean["wga"])  # never averaged over fewer seeds silently
    one_mean, one_std = mean_and_std([{"wga": 0.5, "groups": {"a": 0.2}}])
    assert one_mean["wga"] == 0.5 and one_std == {"groups": {}}  # no "± 0.00" for one seed


def test_bold_only_when_the_best_mean_is_clear_of_the_runner_up_by_both_deviations():
    assert best_row([0.9, 0.8], [0.02, 0.03]) == 0  # 0.10 > 0.05
    assert best_row([0.9, 0.8], [0.06, 0.05]) is None  # 0.10 < 0.11
    assert best_row([0.1, 0.3], [0.0, 0.0], lower_is_better=True) == 0
    assert best_row([0.5, 0.5], [None, None]) is None  # a tie
    assert best_row([None, 0.4], [None, None]) == 1


def test_the_table_shows_mean_plus_minus_std():
    rows = [
        ResultRow(method="original", metrics={"wga": 0.1, "mga": 0.7}, std={"wga": 0.05, "mga": 0.01}, details={"annotation": "none"}, selection=[{"seed": 0, "rule": "val-wga", "epoch": 3}]),
        ResultRow(method="crayon-attention", metrics={"wga": 0.9, "mga": 0.95}, std={"wga": 0.02, "mga": 0.01}, details={"annotation": "yes-no"}),
    ]
    text = markdown_table(Results(dataset="d", backbone="b", seed=0, seeds=[0, 1, 2], rows=rows))
    assert "| original | none | 10.00 ± 5.00 | 70.00 ± 1.00 |" in text
    assert "| crayon-attention | yes-no | **90.00 ± 2.00** | **95.00 ± 1.00** |" in text
    assert "uses validation group labels" in text
