"""docs/where_attention_goes.py: the attention metric's numbers read from a compare results.json and a
study results.csv, averaged over seeds, and written as tables and figures."""

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("where_attention_goes", ROOT / "docs" / "where_attention_goes.py")
report = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = report
spec.loader.exec_module(report)


def attention(on_object: float, original_on_object: float) -> dict:
    numbers = {"energy_on_object": on_object, "energy_where_original_looked": 0.5, "entropy": 0.6, "spread": 0.1}
    return {**numbers, **{f"original_{k}": v for k, v in numbers.items()}, "original_energy_on_object": original_on_object, "images": 0.25}


def test_a_compare_results_file_gives_each_methods_mean_and_sample_std_over_seeds(tmp_path):
    seeds = [{"seed": s, "metrics": {"wga": w, "reasonability": {"unreasonable-accurate": 0.1}, "attention_no": attention(a, 0.1)}} for s, w, a in ((0, 0.6, 0.3), (1, 0.8, 0.5))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"seed": 0, "rows": [{"method": "crayon-attention", "metrics": {}, "seeds": seeds}]}))
    row = report.summarise(report.read(path), "attention_no")["crayon-attention"]
    assert row["energy_on_object"] == pytest.approx((0.4, math.sqrt(0.02)))  # mean 0.4; ((0.1² + 0.1²) / 1) ** 0.5
    assert row["original_energy_on_object"][0] == pytest.approx(0.1) and row["wga"][0] == pytest.approx(0.7)
    assert "| crayon-attention | 2 | 10.0 → 40.0 ± 14.1 |" in report.table({"crayon-attention": row})


def test_a_study_results_csv_groups_cells_by_everything_but_the_seed(tmp_path):
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["refiner", "seed", "flip_rate", "metric", "value"])
        for seed, value in ((0, 0.2), (1, 0.4), (2, 0.6)):
            out.writerow(["gradia", seed, 0.1, "attention:energy_on_object", value])
            out.writerow(["gradia", seed, 0.1, "wga", 0.5])
        out.writerow(["gradia", 0, 0.3, "attention:energy_on_object", 0.9])
    summary = report.summarise(report.read(path), "attention")
    assert set(summary) == {"gradia, flip_rate = 0.1", "gradia, flip_rate = 0.3"}
    assert summary["gradia, flip_rate = 0.1"]["energy_on_object"] == pytest.approx((0.4, 0.2))
    assert math.isnan(summary["gradia, flip_rate = 0.3"]["energy_on_object"][1])  # one seed has no deviation


def test_the_command_writes_the_tables_and_one_figure_per_source(tmp_path):
    seeds = [{"seed": 0, "metrics": {"attention": attention(0.3, 0.1), "attention_no": attention(0.4, 0.05)}}]
    rows = [{"method": "original", "metrics": {}, "seeds": seeds}, {"method": "rrr", "metrics": {}, "seeds": seeds}]
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    assert report.main([f"bars={tmp_path / 'results.json'}", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "tables.md").read_text()
    assert "## bars: all test images" in text and "## bars: images whose original map is answered *no* (25.0 % of the test split)" in text
    assert (tmp_path / "out" / "where-attention-goes-bars.png").stat().st_size > 0


def test_a_seed_without_images_in_a_subset_is_left_out_of_its_numbers_and_its_seed_count(tmp_path):
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["refiner", "seed", "metric", "value"])
        for seed, value in ((0, "0.5"), (1, "nan"), (2, "0.7")):  # seed 1: no map answered yes
            out.writerow(["rrr", seed, "attention_yes:energy_on_object", value])
            out.writerow(["rrr", seed, "wga", 0.4])
    row = report.summarise(report.read(path), "attention_yes")["rrr"]
    assert row["energy_on_object"][0] == pytest.approx(0.6) and row["seeds"][0] == 2
    assert row["wga"][0] == pytest.approx(0.4)


def test_the_training_image_check_imports_and_draws_the_maps_the_loss_trains_through(monkeypatch, tiny_model):
    """docs/attention_on_training_images.py: its imports resolve and its maps are the differentiable
    Grad-CAM's, one per image, in either mode, without touching the model's batch-norm statistics."""
    spec = importlib.util.spec_from_file_location("attention_on_training_images", ROOT / "docs" / "attention_on_training_images.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    monkeypatch.setattr(check, "IMAGES", 3)
    split = SimpleNamespace(images=torch.rand(3, 3, 32, 32), labels=torch.tensor([0, 1, 0]))
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for train_mode in (True, False):
        maps = check.maps(tiny_model, split, train_mode, check.create_interpreter("gradcam"))
        assert maps.shape == (3, 4, 4) and not maps.requires_grad
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())


def test_a_missing_or_unknown_results_file_is_named_and_exits_2(tmp_path, capsys):
    for given in (tmp_path / "missing.csv", tmp_path):
        with pytest.raises(SystemExit) as stop:
            report.main([f"x={given}", "--out", str(tmp_path / "out")])
        assert stop.value.code == 2 and str(given) in capsys.readouterr().err
