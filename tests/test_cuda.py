"""The CUDA path: every stage on a GPU, mixed precision with gradient scaling, pinned asynchronous
copies, ``auto`` resolving to ``cuda``, and one GPU per Ray task.

Marked ``cuda``: ``pytest -m cuda`` runs just these (``make bench-gpu`` does, first); each skips,
saying why, on a machine without a CUDA device.
"""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.datasets.waterbirds import Waterbirds
from crayon_plugins.plugins.interpreters.captum import CaptumGradCam
from test_study import TINY_BASE

from crayon_plugins import Pipeline, RunConfig
from crayon_plugins.config import Optimisation
from crayon_plugins.data.items import Loading
from crayon_plugins.model.gradcam import GradCam
from crayon_plugins.run.pipeline import resolve_device
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.testing import tiny_image_set, tiny_model
from crayon_plugins.testing.benchmark_folders import write_waterbirds
from crayon_plugins.training.loop import fit, non_finite_weights

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False")]

CUDA = torch.device("cuda")


def test_auto_resolves_to_cuda():
    assert resolve_device("auto") == CUDA


def test_every_stage_of_a_run_works_on_cuda_in_bf16():
    refiners = ["crayon-attention", "crayon-pruning", "gradia", "finetune"]
    fast = {"epochs": 1, "amp": "bf16"}
    config = RunConfig(
        device="cuda",
        dataset={"name": "spurious-bars", "n_train": 512, "n_test": 256},
        training={"epochs": 2, "amp": "bf16"},
        refiners=refiners,
        refiner={"crayon-attention": fast, "gradia": fast, "finetune": fast, "crayon-pruning": {"max_pruned": 1.0}},  # a 2-epoch model's neurons are mostly judged irrelevant
    )
    pipeline = Pipeline.from_config(config)
    assert pipeline.device == CUDA
    results = pipeline.run()
    assert [row.method for row in results.rows] == ["original", *refiners]
    for row in results.rows:
        for name in ("wga", "mga", "accuracy"):
            assert 0 <= row.metrics[name] <= 1, (row.method, name, row.metrics[name])
    model = original_model(pipeline, load(pipeline, "train")).model
    assert all(p.device.type == "cuda" for p in model.parameters())


def test_fp16_with_gradient_scaling_trains_on_cuda():
    model, train = tiny_model(0).to(CUDA), tiny_image_set(n=64, seed=3)
    labels = train.labels.to(CUDA)
    loss = lambda i, x: F.cross_entropy(model(x.to(CUDA)), labels[i.to(CUDA)])  # noqa: E731
    with torch.no_grad():
        before = float(F.cross_entropy(model(train.images.all().to(CUDA)), labels))
    fit(model, loss, len(train), Optimisation(epochs=5, lr=1e-2, batch_size=16, amp="fp16"), 0, "fp16", images=train.images)
    with torch.no_grad():
        after = float(F.cross_entropy(model(train.images.all().to(CUDA)), labels))
    assert non_finite_weights(model) is None
    assert after < before


@pytest.mark.parametrize("precision", [torch.bfloat16, torch.float16])
def test_mixed_precision_double_backward_grad_cam_matches_float32(precision):
    model = tiny_model(0).to(CUDA).eval()
    images, targets = tiny_image_set(n=8, seed=2).images.all().to(CUDA), (torch.arange(8) % 2).to(CUDA)

    def maps_and_gradient(mixed: bool):
        model.zero_grad()
        with torch.autocast("cuda", dtype=precision, enabled=mixed):
            maps, _ = GradCam().explain(model, images, targets)
        assert maps.dtype == torch.float32
        maps.sum().backward()  # through the double backward to the weights
        return maps.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    exact, exact_grad = maps_and_gradient(False)
    mixed, mixed_grad = maps_and_gradient(True)
    assert (mixed - exact).abs().max() < 0.05
    assert F.cosine_similarity(mixed_grad, exact_grad, dim=0) > 0.99


def test_cuda_maps_and_logits_match_the_cpu():
    model, images = tiny_model(0).eval(), tiny_image_set(n=16, seed=4).images.all()
    targets = torch.arange(16) % 2
    on_cpu = CaptumGradCam()(model, images, targets)
    on_gpu = CaptumGradCam()(model.to(CUDA), images.to(CUDA), targets.to(CUDA)).cpu()
    assert (on_cpu - on_gpu).abs().max() < 1e-4
    with torch.no_grad():
        assert torch.allclose(model(images.to(CUDA)).cpu(), model.cpu()(images), atol=1e-4)


def test_on_disk_batches_arrive_pinned_and_copy_asynchronously(tmp_path):
    write_waterbirds(tmp_path, 16, 4, 4, image_size=64)
    images = Waterbirds(Waterbirds.Params(root=str(tmp_path), image_size=64, resize=72)).load("train").images
    plain = torch.cat([batch for _, batch in images.batches(batch_size=8)])
    pinned = images.with_loading(Loading(num_workers=2, pin_memory=True))
    copies = []
    for _, batch in pinned.batches(batch_size=8):
        assert batch.is_pinned()
        copies.append(batch.to(CUDA, non_blocking=True))
    torch.cuda.synchronize()
    assert torch.equal(torch.cat(copies).cpu(), plain)


def test_ray_gives_each_task_of_a_cuda_study_one_gpu(tmp_path, monkeypatch):
    from crayon_plugins.study.executors import RayCluster
    from crayon_plugins.study.runner import run_study

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    with RayCluster(threads=1) as cluster:
        assert cluster.device("auto") == "cuda"
        cluster.start(tmp_path / "probe-cache", "cuda")
        visible, _ = cluster.result(cluster.submit(os.getenv, "CUDA_VISIBLE_DEVICES"))
        count, _ = cluster.result(cluster.submit(torch.cuda.device_count))
    assert visible is not None and len(visible.split(",")) == 1 and count == 1

    spec = tmp_path / "spec.toml"
    base = TINY_BASE.replace("[base]", '[base]\ndevice = "cuda"', 1)
    spec.write_text(f'title = "cuda"\nquestion = "one GPU a task?"\n{base}\n[grid]\nrefiner = ["crayon-attention"]\nseed = [0]\n')
    run_study(spec, tmp_path / "out", cache_root=tmp_path / "cache", executor="ray")
    records = [json.loads(path.read_text()) for path in (tmp_path / "out" / "cells").glob("*.json")]
    assert records and all(record["device"] == "cuda" for record in records)
    assert all(math.isfinite(record["metrics"]["wga"]) for record in records)
