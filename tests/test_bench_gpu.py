"""``make bench-gpu``'s script: its CPU dry run (every step at tiny sizes), its time limits, its
refusal without a GPU, and the arithmetic of its extrapolation."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu = load_script()


@pytest.mark.slow(minutes=1)
def test_the_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    for step in ("cuda-tests", "steps", "gradia-pruning", "folder", "loading", "real-size"):
        assert figures[step]["status"] == "ok", (step, figures[step])
    assert figures["steps"]["step_ratio"] > 0 and figures["steps"]["throughput_ratio"] > 0
    assert set(figures["real-size"]["stages"]) >= {"ERM (1 epochs)", "crayon-attention (1 epochs)", "crayon-pruning (10 epochs)", "evaluation of crayon-pruning"}
    assert figures["real-size"]["splits"] == [24, 8, 8]
    text = out.read_text()
    assert "**Dry run**" in text and "make bench-gpu" in text
    for heading in ("## CUDA tests", "## The training step", "## GRADIA's Grad-CAM", "## Data loading from disk", "## CRAYON's Waterbirds setting at real size", "## The whole comparison, extrapolated"):
        assert heading in text
    assert f"{figures['extrapolation']['gpu_hours']:.1f} GPU-hours" in text
    assert "crayon-attention step / ERM step" in done.stdout  # figures are printed as they come


def test_a_step_past_its_time_limit_is_stopped_and_reported(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    start = time.monotonic()
    found = gpu._finish(process, "slow", 0.5, tmp_path)
    assert found == {"status": "timed out after 1 s"}
    assert time.monotonic() - start < 10 and process.poll() is not None


def test_a_step_that_fails_is_reported_without_figures(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    assert gpu._finish(process, "broken", 30, tmp_path) == {"status": "failed (exit code 3; its error is printed above)"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_a_gpu_the_real_run_refuses_and_names_the_dry_run(capsys):
    assert gpu.main([]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_the_extrapolation_is_the_stated_arithmetic():
    figures = {
        "steps": {"status": "ok", "erm_device_images_per_s": 1000.0, "attention_device_images_per_s": 800.0},
        "gradia-pruning": {"status": "ok", "gradia_per_image_images_per_s": 300.0, "feature_pass_images_per_s": 4000.0},
        "loading": {"status": "ok", "loading_augmented_images_per_s": 900.0, "loading_plain_images_per_s": 2000.0},
    }
    found = gpu.extrapolate(figures)
    per = found["per_image_seconds"]
    assert per["erm"] == pytest.approx(1 / 900)  # reading from disk (900/s) is slower than the step (1,000/s)
    assert per["attention"] == pytest.approx(1 / 800)
    assert per["gradia"] == pytest.approx(1 / 200)  # 300/s for the maps and their backward, ÷ 1.5 for the rest of the step
    assert per["features"] == pytest.approx(1 / 2000)
    row = next(r for r in found["rows"] if r["dataset"] == "Waterbirds" and r["method"] == "crayon-attention")
    assert row["seconds"] == pytest.approx(10 * (4795 / 800 + 1199 / 2000) + 2 * 5794 / 2000)
    pruning = next(r for r in found["rows"] if r["dataset"] == "Waterbirds" and r["method"] == "crayon-pruning")
    assert pruning["seconds"] == pytest.approx(4795 / 2000 + 1199 / 2000 + 2 * 5794 / 2000)
    lff = next(r for r in found["rows"] if r["dataset"] == "Biased CelebA" and r["method"] == "lff")
    assert lff["seconds"] == pytest.approx(50 * (20200 * 2 / 900 + 800 / 2000) + 2 * 7200 / 2000)
    assert found["gpu_hours"] == pytest.approx(5 * sum(r["seconds"] for r in found["rows"]) / 3600)
    assert gpu.extrapolate({**figures, "loading": {"status": "timed out after 30 s"}}) is None
