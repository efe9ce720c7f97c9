"""JtT's choice of T and λ_up on validation: the ranking by hand (worst-group, then mean-group, then
plain accuracy; accuracy without groups), and a tiny run whose validation is scripted, whose kept
model is exactly the one a single-value run of the chosen pair trains."""

import dataclasses
import math

import pytest
import torch
from crayon_plugins.plugins.refiners.jtt import ErrorsAfter, choose_pair, ranking

GROUP_ORDER, ACCURACY_ORDER = ("wga", "mga", "plain_accuracy"), ("plain_accuracy", "balanced_accuracy")
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner
from crayon_plugins.api import ConfigError, CrayonError, Selection, predict


def scores(wga, mga, acc):
    return {"wga": wga, "mga": mga, "plain_accuracy": acc, "balanced_accuracy": 0.5}


def test_the_pair_with_the_best_validation_wga_is_chosen_ties_broken_by_mga_then_accuracy():
    """Grid (1, 20), (1, 100), (2, 20), (2, 100):

    - WGA 0.50, 0.60, 0.55, 0.40: (1, 100), index 1, alone has the best;
    - WGA 0.50, 0.60, 0.60, 0.60 and MGA 0.70, 0.65, 0.72, 0.72: the last two tie on WGA and MGA, and
      plain accuracy 0.75 against 0.90 picks (2, 100), index 3, over (2, 20) and over (1, 100)'s
      better accuracy 0.95, which its lower MGA already ruled out;
    - every metric tied: the first pair in grid order;
    - a NaN WGA never wins, even against WGA 0."""
    assert choose_pair([scores(0.50, 0.9, 0.9), scores(0.60, 0.7, 0.7), scores(0.55, 0.8, 0.8), scores(0.40, 0.9, 0.9)]) == 1
    assert choose_pair([scores(0.50, 0.70, 0.80), scores(0.60, 0.65, 0.95), scores(0.60, 0.72, 0.75), scores(0.60, 0.72, 0.90)]) == 3
    assert choose_pair([scores(0.6, 0.7, 0.8)] * 4) == 0
    assert choose_pair([scores(math.nan, 0.9, 0.9), scores(0.0, 0.1, 0.1)]) == 1


def test_without_groups_or_with_search_metric_accuracy_accuracy_decides():
    """Without ``wga`` (validation has no group attribute), plain accuracy then balanced accuracy rank
    the pairs: 0.8, 0.8, 0.7 tie the first two, and balanced 0.7 over 0.6 picks index 1;
    ``search_metric = "accuracy"`` ranks so even with groups."""
    plain = [{"plain_accuracy": 0.8, "balanced_accuracy": 0.6}, {"plain_accuracy": 0.8, "balanced_accuracy": 0.7}, {"plain_accuracy": 0.7, "balanced_accuracy": 0.9}]
    assert ranking(plain) == ACCURACY_ORDER and choose_pair(plain) == 1
    grouped = [scores(0.6, 0.7, 0.80), scores(0.5, 0.7, 0.85)]
    assert ranking(grouped) == GROUP_ORDER and ranking(grouped, "accuracy") == ACCURACY_ORDER
    assert choose_pair(grouped) == 0 and choose_pair(grouped, "accuracy") == 1


def test_single_values_and_lists_are_accepted_and_the_default_is_a_small_grid():
    params = create_refiner("jtt").params
    assert params.stage_one_epochs == [1, 2] and params.upweight == [20.0, 100.0] and params.search_metric == "wga"
    single = create_refiner("jtt", {"stage_one_epochs": 3, "upweight": 50}).params
    assert single.stage_one_epochs == 3 and single.upweight == 50.0
    for bad in ({"stage_one_epochs": []}, {"upweight": [-1.0]}, {"stage_one_epochs": [0]}):
        with pytest.raises(ConfigError):
            create_refiner("jtt", bad)


SCRIPTED = [scores(0.50, 0.70, 0.80), scores(0.60, 0.70, 0.80), scores(0.60, 0.75, 0.70), scores(0.40, 0.90, 0.90)]
"""The validation of the four stage-two models of grid (1, 20), (1, 5), (2, 20), (2, 5), in turn:
(1, 5) and (2, 20) tie on WGA 0.60, and (2, 20)'s MGA 0.75 decides against its lower accuracy."""


def scripted(selection: Selection) -> Selection:
    answers = iter(SCRIPTED)
    return dataclasses.replace(selection, evaluate=lambda model: dict(next(answers)), curve=None)


def stage_one(train_size: int):
    """Stand-in error sets, different for T = 1 and T = 2 (on the tiny data, as on the embedded
    benchmark, both stops give the same errors; :func:`test_stage_one_errors_after_t_epochs_of_a_longer_run_are_those_of_a_run_of_t_epochs`
    checks the real ones)."""
    items = torch.arange(train_size)
    return lambda context, stops: {t: {1: items % 5 == 0, 2: items % 3 == 0}[t] for t in stops}


def test_a_tiny_search_keeps_the_pair_best_on_validation_and_its_model(tmp_path, monkeypatch):
    """One stage-two epoch per pair, so validation is asked once per pair, in grid order. The kept
    model is the one a single-value run of (2, 20) trains, the search is recorded, and the run's
    selection record is that pair's curve."""
    model, context = original_and_context(tiny_pipeline(tmp_path, refiners=["jtt"]))
    grid = create_refiner("jtt", {"epochs": 1, "stage_one_epochs": [1, 2], "upweight": [20, 5]})
    monkeypatch.setattr(grid, "stage_one_errors", stage_one(len(context.train)))
    searched = dataclasses.replace(context, selection=scripted(context.selection))
    refined = grid.refine(model, searched)
    search = searched.details["search"]
    assert [(p["stage_one_epochs"], p["upweight"]) for p in search["pairs"]] == [(1, 20), (1, 5), (2, 20), (2, 5)]
    assert [p["validation"]["wga"] for p in search["pairs"]] == [0.50, 0.60, 0.60, 0.40]
    assert search["chosen"] == 2 and search["ranked_by"] == list(GROUP_ORDER)
    assert searched.selection.curve.epochs == [SCRIPTED[2]]

    assert [p["errors"] for p in search["pairs"]] == [len(range(0, len(context.train), 5))] * 2 + [len(range(0, len(context.train), 3))] * 2
    single = create_refiner("jtt", {"epochs": 1, "stage_one_epochs": 2, "upweight": 20})
    monkeypatch.setattr(single, "stage_one_errors", stage_one(len(context.train)))
    alone = single.refine(model, context)
    assert context.details["search"]["pairs"][0]["errors"] == search["pairs"][2]["errors"]
    for (name, a), b in zip(refined.state_dict().items(), alone.state_dict().values()):
        assert torch.equal(a, b), name


def test_stage_one_errors_after_t_epochs_of_a_longer_run_are_those_of_a_run_of_t_epochs(tmp_path):
    """The errors read after epoch 1 of a 2-epoch ERM run are those of a 1-epoch run with the seed."""
    _, context = original_and_context(tiny_pipeline(tmp_path, refiners=["jtt"]))
    refiner = create_refiner("jtt", {"epochs": 1})
    both = refiner.stage_one_errors(context, [1, 2])
    assert torch.equal(both[1], refiner.stage_one_errors(context, [1])[1])
    assert torch.equal(both[2], refiner.stage_one_errors(context, [2])[2])
    # more than the errors: reading them after epoch 1 leaves the run as it would be uninterrupted,
    # and the model after epoch 1 is the 1-epoch model
    read = ErrorsAfter({1}, context)
    watched = refiner.train(context, 2, None, "watched", select=False, observers=[read])
    plain = refiner.train(context, 2, None, "plain", select=False)
    for (name, a), b in zip(watched.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    one = refiner.train(context, 1, None, "one", select=False)
    assert torch.equal(read.errors[1], predict(one, context.train.images, context.device).argmax(dim=1) != context.train.labels)


def test_a_search_without_validation_is_refused_and_single_values_need_none(tmp_path):
    model, context = original_and_context(tiny_pipeline(tmp_path, refiners=["jtt"]))
    blind = dataclasses.replace(context, selection=None, val=None)
    with pytest.raises(CrayonError, match="validation"):
        create_refiner("jtt", {"epochs": 1}).refine(model, blind)
    refined = create_refiner("jtt", {"epochs": 1, "stage_one_epochs": 1, "upweight": 20}).refine(model, blind)
    assert all(bool(torch.isfinite(p).all()) for p in refined.parameters())


def test_a_pair_whose_error_set_an_earlier_t_had_is_not_trained_again(tmp_path, monkeypatch):
    """When T = 1 and T = 2 give the same errors (on the embedded benchmark both were the 143 items of
    the minority groups), (2, λ_up) would train the model of (1, λ_up) again from the same seed: it
    takes that pair's scores instead (``same_as``), and, tied with it, is never kept over it."""
    model, context = original_and_context(tiny_pipeline(tmp_path, refiners=["jtt"]))
    refiner = create_refiner("jtt", {"epochs": 1, "stage_one_epochs": [1, 2], "upweight": [20, 5]})
    same = torch.arange(len(context.train)) % 7 == 0
    monkeypatch.setattr(refiner, "stage_one_errors", lambda context, stops: {1: same, 2: same.clone()})
    built = []
    counted = dataclasses.replace(context, selection=scripted(context.selection), build_model=lambda: built.append(1) or context.build_model())
    refiner.refine(model, counted)
    pairs = counted.details["search"]["pairs"]
    assert len(built) == 2  # only (1, 20) and (1, 5) trained
    assert [p.get("same_as") for p in pairs] == [None, None, 0, 1]
    assert [p["validation"]["wga"] for p in pairs] == [0.50, 0.60, 0.50, 0.60]
    assert counted.details["search"]["chosen"] == 1 and [p["stage_one_epochs"] for p in pairs] == [1, 1, 2, 2]
