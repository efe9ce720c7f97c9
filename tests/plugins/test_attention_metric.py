"""The ``attention`` metric: hand-computed numbers on tiny maps, its properties, and a run."""

import math
import re

import pytest
import torch
from crayon_plugins.plugins.datasets.spurious_bars import SpuriousBars
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import tiny_pipeline

from crayon_plugins import ConfigError, create_metric
from crayon_plugins.api.components import Predictions
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import CrayonError
from crayon_plugins.registry import Registration, default_registry
from crayon_plugins.run.stages import evaluate, explain

TOP_LEFT = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
"""A 4×4 object mask on the top-left cell of a 2×2 grid."""


def predictions(maps, original, masks):
    """Predictions on ``len(maps)`` blank images with object ``masks`` and these maps."""
    maps, original, masks = torch.as_tensor(maps, dtype=torch.float32), torch.as_tensor(original, dtype=torch.float32), torch.as_tensor(masks)
    n = len(maps)
    split = ImageSet(torch.zeros(n, 3, *masks.shape[1:]), torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64), masks, tuple(map(str, range(n))), ("a", "b"), ())
    return Predictions(split, torch.zeros(n, dtype=torch.int64), split.group_shares(), maps=maps, original_maps=original)


def attention(maps, original, masks):
    """The ``attention`` numbers, with the groups by the original map's answer under ``by_original_answer``."""
    found = create_metric("attention").compute(predictions(maps, original, masks))
    return {**found["attention"], "by_original_answer": {answer: found[f"attention_{answer}"] for answer in ("yes", "maybe", "no")}}


def test_a_map_on_one_cell_and_a_uniform_map_against_hand_computed_numbers():
    one_cell, uniform = [[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]
    found = attention([one_cell], [uniform], TOP_LEFT[None])
    assert found["energy_on_object"] == pytest.approx(1.0) and found["entropy"] == 0.0 and found["spread"] == 0.25
    assert found["energy_where_original_looked"] == pytest.approx(1.0)  # the uniform map's high region is every cell
    assert found["original_energy_on_object"] == pytest.approx(0.25) and found["original_entropy"] == pytest.approx(1.0) and found["original_spread"] == 1.0
    assert found["zero_maps"] == found["original_zero_maps"] == 0.0


def test_mass_where_the_original_looked_entropy_and_spread_by_hand():
    # mass 1.5, two thirds on the top-left cell; p = (2/3, 1/3) over the cells
    maps = [[[1.0, 0.5], [0.0, 0.0]]]
    original = [[[0.0, 1.0], [0.2, 0.6]]]  # its high region (≥ 0.5 of its max): top-right and bottom-right
    found = attention(maps, original, TOP_LEFT[None])
    entropy = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(4)
    assert found["energy_on_object"] == pytest.approx(2 / 3) and found["energy_where_original_looked"] == pytest.approx(0.5 / 1.5)
    assert found["entropy"] == pytest.approx(entropy) and found["spread"] == 0.5
    # the original: nothing on the object, 1.6 of its 1.8 in its own high region, 3 of 4 cells non-zero
    assert found["original_energy_on_object"] == 0.0 and found["original_energy_where_original_looked"] == pytest.approx(1.6 / 1.8)
    original_p = torch.tensor([1.0, 0.2, 0.6], dtype=torch.float64) / 1.8
    assert found["original_entropy"] == pytest.approx(float(-(original_p * original_p.log()).sum() / math.log(4))) and found["original_spread"] == 0.5


def test_a_cell_the_object_only_touches_counts_whole_as_the_saliency_oracle_judges():
    pixel = torch.zeros(1, 4, 4, dtype=torch.bool)
    pixel[0, 1, 1] = True  # one pixel of the top-left cell's four
    assert attention([[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [0.0, 0.0]]], pixel)["energy_on_object"] == pytest.approx(0.5)


def test_all_zero_maps_are_counted_and_left_out_of_the_means():
    maps = [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
    original = [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]
    found = attention(maps, original, TOP_LEFT.expand(3, 4, 4))
    assert found["zero_maps"] == pytest.approx(1 / 3) and found["original_zero_maps"] == pytest.approx(1 / 3)
    assert found["energy_on_object"] == pytest.approx((1 + 0.25) / 2) and found["entropy"] == pytest.approx(0.5) and found["spread"] == pytest.approx((0.25 + 1) / 2)
    # where the original looked: only the third image has both maps non-zero; the uniform map puts a quarter on the original's one cell
    assert found["energy_where_original_looked"] == pytest.approx(0.25)
    assert found["original_energy_on_object"] == pytest.approx(1.0) and found["original_entropy"] == 0.0


def test_only_zero_maps_give_nan_means_and_missing_maps_or_masks_are_clear_errors():
    found = attention([[[0.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]], TOP_LEFT[None])
    assert found["zero_maps"] == 1.0 and all(math.isnan(found[k]) for k in ("energy_on_object", "energy_where_original_looked", "entropy", "spread"))
    found = predictions([[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]], TOP_LEFT[None])
    metric = create_metric("attention")
    with pytest.raises(CrayonError, match="'attention' needs the evaluated and the original model's maps"):
        metric.compute(Predictions(found.split, found.predicted, found.train_group_shares))
    bare = ImageSet(found.split.images, found.split.labels, found.split.spurious, None, found.split.ids, ("a", "b"), ())
    with pytest.raises(CrayonError, match="'attention' needs object masks"):
        metric.compute(Predictions(bare, found.predicted, found.train_group_shares, maps=found.maps, original_maps=found.original_maps))


@st.composite
def maps_and_masks(draw):
    """1–4 maps on a grid of 1–4 × 1–4 cells with values in eighths (so that scaling moves no cell
    across half the maximum by rounding), the original's likewise, and masks at twice the grid."""
    n, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    grid = lambda: torch.tensor(draw(st.lists(st.integers(0, 8), min_size=n * h * w, max_size=n * h * w)), dtype=torch.float32).reshape(n, h, w) / 8  # noqa: E731
    masks = torch.tensor(draw(st.lists(st.booleans(), min_size=n * 4 * h * w, max_size=n * 4 * h * w))).reshape(n, 2 * h, 2 * w)
    return grid(), grid(), masks


SHARES = ("energy_on_object", "energy_where_original_looked", "entropy", "spread", "zero_maps")


@settings(max_examples=60, deadline=None)
@given(maps_and_masks(), st.floats(0.01, 100), st.floats(0.01, 100))
def test_numbers_lie_in_the_unit_interval_and_do_not_change_when_a_map_is_scaled(drawn, scale, original_scale):
    maps, original, masks = drawn
    found = attention(maps, original, masks)
    groups = found.pop("by_original_answer")
    assert set(found) == {*SHARES, *(f"original_{k}" for k in SHARES)} and set(groups) == {"yes", "maybe", "no"}
    assert all(set(g) == {"images", *found} for g in groups.values())
    assert sum(g["images"] for g in groups.values()) == pytest.approx(1 - found["original_zero_maps"])
    numbers = [*found.values(), *(v for g in groups.values() for v in g.values())]
    assert all(math.isnan(v) or -1e-12 <= v <= 1 + 1e-12 for v in numbers)
    scaled = attention(maps * scale, original * original_scale, masks)
    scaled_groups = scaled.pop("by_original_answer")
    for name, value in found.items():
        assert scaled[name] == pytest.approx(value, rel=1e-4, abs=1e-9, nan_ok=True), name
    for answer, group in groups.items():
        for name, value in group.items():
            assert scaled_groups[answer][name] == pytest.approx(value, rel=1e-4, abs=1e-9, nan_ok=True), (answer, name)


class BarsWithoutMasks(SpuriousBars):
    def has_masks(self) -> bool:
        return False


def test_a_dataset_without_masks_is_refused_naming_the_metric(tmp_path):
    registry = default_registry()
    registry.components["dataset"]["bars-without-masks"] = Registration("dataset", "bars-without-masks", BarsWithoutMasks, "test-plugin")
    try:
        pipeline = tiny_pipeline(tmp_path, dataset={"name": "bars-without-masks"}, refiners=["group-balanced"], metrics=["accuracy", "attention"])
        with pytest.raises(ConfigError, match=re.escape("metrics: 'attention' needs object masks, which dataset 'bars-without-masks' does not have; drop 'attention' from metrics")):
            pipeline.check_needs()
    finally:
        del registry.components["dataset"]["bars-without-masks"]


def test_a_run_reports_the_metric_and_the_original_compared_with_itself_shows_no_change(tmp_path, monkeypatch):
    explained = []

    def counted(interpreter, model, images, targets, device, description, **rest):
        explained.append(description)
        return explain_all(interpreter, model, images, targets, device, description, **rest)

    explain_all = explain.explain_all
    monkeypatch.setattr(explain, "explain_all", counted)
    monkeypatch.setattr(evaluate, "explain_all", counted)
    metrics = ["group-accuracy", "reasonability", "attention"]
    results = tiny_pipeline(tmp_path / "cache", refiners=["crayon-attention"], metrics=metrics).run(tmp_path / "out")
    original, refined = (results.row(m).metrics["attention"] for m in ("original", "crayon-attention"))
    assert all(math.isfinite(v) for row in (original, refined) for v in row.values())
    for answer in ("yes", "maybe", "no"):  # the original against itself: before and after agree in every group
        group = results.row("original").metrics[f"attention_{answer}"]
        assert all(group[name] == group[f"original_{name}"] or (math.isnan(group[name]) and math.isnan(group[f"original_{name}"])) for name in SHARES), answer
    for name in SHARES:
        assert original[name] == original[f"original_{name}"], name
        assert refined[f"original_{name}"] == original[f"original_{name}"], name
    assert original["energy_where_original_looked"] > 0  # a non-zero map's maximum lies in its own high region
    # the original's test maps once, and one explanation per row shared by the reasonability matrix and this metric
    assert explained.count("explain original on the test split") == 1 and explained.count("explain on the test split") == 2
    assert [c.header for c in results.table().columns] == ["method", "WGA", "MGA", "RA", "UA"]  # not in the console table
    explained.clear()
    again = tiny_pipeline(tmp_path / "cache", refiners=["crayon-attention"], metrics=metrics).run()
    assert "explain original on the test split" not in explained and again.row("crayon-attention").metrics["attention"] == refined


def test_a_studys_first_wave_caches_the_original_test_maps(tmp_path):
    pipeline = tiny_pipeline(tmp_path / "cache", refiners=["group-balanced"], metrics=["accuracy", "attention"])
    pipeline.prepare_shared()
    assert pipeline.cache.path("maps", explain.maps_key(pipeline, "test")).is_file() and explain.maps_key(pipeline, "test") != explain.maps_key(pipeline)
    assert explain.cached_test_maps(pipeline, pipeline.dataset.load("test")).shape[0] == 64


def test_images_are_grouped_by_the_answer_a_noise_free_oracle_gives_the_original_map():
    """Original maps with 1, 0.25 and 0 of their mass on the object are answered yes, maybe, no
    (thresholds 0.5 and 0.2); each group reports the new maps' numbers over its images."""
    uniform, on, off = [[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]
    computed = create_metric("attention").compute(predictions([off, on, on], [on, uniform, off], TOP_LEFT.expand(3, 4, 4)))
    found = {answer: computed[f"attention_{answer}"] for answer in ("yes", "maybe", "no")}
    assert {a: g["images"] for a, g in found.items()} == pytest.approx({"yes": 1 / 3, "maybe": 1 / 3, "no": 1 / 3})
    assert found["yes"]["energy_on_object"] == 0.0 and found["yes"]["original_energy_on_object"] == pytest.approx(1.0)  # moved off the object
    assert found["maybe"]["energy_on_object"] == pytest.approx(1.0) and found["maybe"]["original_energy_on_object"] == pytest.approx(0.25)
    assert found["no"]["energy_on_object"] == pytest.approx(1.0) and found["no"]["energy_where_original_looked"] == 0.0  # onto the object, away from where it looked
    assert found["no"]["entropy"] == 0.0 and found["no"]["original_entropy"] == 0.0
