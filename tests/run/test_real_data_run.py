"""The whole run on a Waterbirds-format folder with the shipped ImageNet-pretrained backbone, the
way a researcher with Waterbirds on disk would start (``benchmarks/waterbirds_efficientnet.toml`` at
224 px; here 96 px and 40 images, so it takes about a minute)."""

import json
import os
import subprocess
import sys

import pytest

from crayon_plugins.config import RunConfig
from crayon_plugins.model.features import predict
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.testing.benchmark_folders import write_backgrounds_challenge, write_waterbirds


@pytest.mark.slow
def test_crayon_run_on_a_waterbirds_folder_with_pretrained_efficientnet(tmp_path):
    write_waterbirds(tmp_path / "waterbirds", 24, 8, 8, image_size=96)
    config = tmp_path / "run.toml"
    config.write_text(
        'refiners = ["crayon-attention", "crayon-pruning", "gradia"]\n'
        'metrics = ["accuracy", "group-accuracy", "reasonability"]\n'
        f'[dataset]\nname = "waterbirds"\nroot = "{tmp_path / "waterbirds"}"\nimage_size = 96\n'
        '[backbone]\nmodel = "efficientnet_lite0"\npretrained = true\nfeature_stage = "whole"\n'
        "[training]\nepochs = 1\nbatch_size = 8\n[concepts]\nk = 4\n"
        "[refiner.crayon-attention]\nepochs = 1\nbatch_size = 8\n[refiner.gradia]\nepochs = 1\nbatch_size = 8\n"
        "[refiner.crayon-pruning]\nepochs = 1\nmax_pruned = 1.0\n"
    )
    env = {**os.environ, "CRAYON_CACHE_DIR": str(tmp_path / "cache")}
    crayon = [sys.executable, "-m", "crayon_plugins"]
    run = subprocess.run([*crayon, "run", "--config", str(config), "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["method"] for row in results["rows"]] == ["original", "crayon-attention", "crayon-pruning", "gradia"]
    assert results["backbone"].startswith("timm(") and "efficientnet_lite0" in results["backbone"] and "pretrained=True" in results["backbone"]
    for row in results["rows"]:
        assert 0 <= row["metrics"]["wga"] <= row["metrics"]["mga"] <= 1
        assert sum(row["metrics"]["reasonability_counts"].values()) == 8  # every test image judged
    assert results["neuron_annotations"]["relevant"] + results["neuron_annotations"]["irrelevant"] + results["neuron_annotations"]["maybe"] == 1280
    assert (tmp_path / "out" / "reasonability-gradia.png").is_file()
    models = sorted((tmp_path / "cache" / "models").glob("*.pt"))
    sheets = subprocess.run([*crayon, "concepts", "--config", str(config), "--out", str(tmp_path / "sheets"), "--neurons", "0,7"], capture_output=True, text=True, env=env)
    assert sheets.returncode == 0, sheets.stdout + sheets.stderr
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == ["index.md", "neuron-0000.png", "neuron-0007.png"]
    assert sorted((tmp_path / "cache" / "models").glob("*.pt")) == models  # the run's model, not trained again



@pytest.mark.slow
def test_backgrounds_challenge_results_carry_mr_and_bg_gap_of_the_models_predictions(tmp_path):
    write_backgrounds_challenge(tmp_path / "in9", per_class=2, image_size=32)
    config = RunConfig.model_validate(
        {
            "dataset": {"name": "backgrounds-challenge", "root": str(tmp_path / "in9"), "image_size": 32},
            "training": {"epochs": 2, "batch_size": 16},
            "refiners": ["finetune"],  # needs no annotation: the dataset has no object masks
            "refiner": {"finetune": {"epochs": 1}},
            "metrics": ["accuracy", "group-accuracy", "mr", "bg-gap"],
        }
    )
    pipeline = Pipeline.from_config(config, cache=ArtefactCache(tmp_path / "cache"))
    results = pipeline.run(tmp_path / "out")
    model = original_model(pipeline, load(pipeline, "train")).model
    accuracy = {}
    for name in ("mixed_same", "mixed_rand"):
        split = load(pipeline, name)
        assert len(split) == 18  # 9 classes × 2
        accuracy[name] = float((predict(model, split.images, pipeline.device).argmax(dim=1) == split.labels).double().mean())
    original = results.row("original").metrics
    assert original["mr"] == accuracy["mixed_rand"]
    assert original["bg_gap"] == accuracy["mixed_same"] - accuracy["mixed_rand"]
    assert set(results.row("finetune").metrics) >= {"mr", "bg_gap", "wga"} and results.annotations == {"yes": 0, "no": 0, "maybe": 0}
