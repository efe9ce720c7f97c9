"""One training serves every selection rule: each rule's row is a lookup of the test metrics the
trainer recorded at the epoch that rule keeps (``[selection] also``)."""

import math

import pytest

from crayon_plugins.run.results import ResultRow, Results
from crayon_plugins.run.stages.report import other_rules
from crayon_plugins.run.table import markdown_table
from crayon_plugins.training.selection import Curve

VALIDATION = [  # epoch 2 has the best accuracy, epoch 1 the best worst-group accuracy
    {"wga": 0.40, "mga": 0.70, "plain_accuracy": 0.80, "balanced_accuracy": 0.80},
    {"wga": 0.20, "mga": 0.60, "plain_accuracy": 0.90, "balanced_accuracy": 0.85},
    {"wga": 0.30, "mga": 0.65, "plain_accuracy": 0.85, "balanced_accuracy": 0.80},
]
TEST = [{"wga": 0.41, "accuracy": 0.81}, {"wga": 0.22, "accuracy": 0.92}, {"wga": 0.33, "accuracy": 0.83}]


def curve(chosen: int = 2) -> Curve:
    return Curve("val-accuracy", VALIDATION, chosen, test=TEST)


def test_each_rule_looks_up_the_test_metrics_of_the_epoch_it_keeps():
    found = other_rules(["val-wga", "last", "val-accuracy"], curve(), dict(TEST[1]))
    assert found == {"val-wga": {"epoch": 1, "metrics": TEST[0]}, "last": {"epoch": 3, "metrics": TEST[2]}, "val-accuracy": {"epoch": 2, "metrics": TEST[1]}}


def test_a_model_not_trained_by_epochs_has_one_row_for_every_rule():
    assert other_rules(["last", "val-wga"], None, {"wga": 0.5}) == {"last": {"epoch": None, "metrics": {"wga": 0.5}}, "val-wga": {"epoch": None, "metrics": {"wga": 0.5}}}


@pytest.mark.parametrize("measured", [{"wga": 0.5, "accuracy": 0.92}, {"wga": 0.22}, {"wga": 0.22, "accuracy": 0.92, "extra": 1.0}])
def test_no_lookup_when_the_returned_model_is_not_the_one_the_curve_followed(measured):
    """The run's own rule's lookup must give the numbers measured on the returned model; a refiner
    that changed the model after its training would otherwise get another model's numbers."""
    found = other_rules(["last"], curve(), measured)
    assert found["last"]["metrics"] is None and found["last"]["epoch"] is None and "cannot be looked up" in found["last"]["why"]


def test_a_curve_without_test_metrics_has_no_lookup():
    assert other_rules(["last"], Curve("val-accuracy", VALIDATION, 2), dict(TEST[1]))["last"]["metrics"] is None


def test_nan_equals_nan_in_the_check():
    nan_curve = Curve("val-accuracy", VALIDATION, 2, test=[TEST[0], {"wga": math.nan}, TEST[2]])
    assert other_rules(["last"], nan_curve, {"wga": math.nan})["last"] == {"epoch": 3, "metrics": TEST[2]}


def row_over_seeds(method: str, lookups: list[dict | None]) -> ResultRow:
    selection = [{"seed": seed, "rule": "val-accuracy", "epoch": 2, "validation": VALIDATION, **({"rules": {"last": found}} if found else {})} for seed, found in enumerate(lookups)]
    return ResultRow(method=method, metrics={"wga": 0.0}, std={"wga": 0.0}, details={"annotation": "none"}, selection=selection, seeds=[{"seed": s, "metrics": {"wga": 0.0}} for s in range(len(lookups))])


def test_results_under_another_rule_average_the_looked_up_rows_and_say_where_they_come_from():
    results = Results(
        dataset="d",
        backbone="b",
        seed=0,
        seeds=[0, 1],
        rows=[
            row_over_seeds("finetune", [{"epoch": 3, "metrics": {"wga": 0.30}}, {"epoch": 1, "metrics": {"wga": 0.50}}]),
            row_over_seeds("odd", [{"epoch": None, "metrics": None, "why": "the returned model is not the one"}, {"epoch": 3, "metrics": {"wga": 0.1}}]),
        ],
    )
    last = results.under("last")
    finetune = last.row("finetune")
    assert finetune.metrics["wga"] == pytest.approx(0.40) and finetune.std["wga"] == pytest.approx(math.sqrt(0.02))
    assert [(e["seed"], e["rule"], e["epoch"], e["from_rule"]) for e in finetune.selection] == [(0, "last", 3, "val-accuracy"), (1, "last", 1, "val-accuracy")]
    assert last.row("odd").metrics == {} and "not the one" in last.row("odd").details["no_lookup"]
    table = markdown_table(last)
    assert "| finetune | none | **40.00 ± 14.14** |" in table and "| odd | none | — |" in table
    assert "selection rule `last`" in table and "Looked up from the same trainings as the run's rule `val-accuracy`" in table and "No numbers: odd (" in table
    assert results.under("val-wga").row("finetune").details["no_lookup"].startswith("no lookup for rule 'val-wga' was recorded")
