"""GPU figures: the CUDA tests, the training step's cost, throughput against plain PyTorch, data
loading, and CRAYON's Waterbirds setting at real size, written to ``docs/gpu.md``.

    make bench-gpu                                 # on a CUDA machine: at most 8 minutes
    python benchmarks/gpu.py --dry-run --out X.md  # every step at tiny sizes on the CPU

Each step runs in a process of its own under its own time limit, so one slow or failing step
cannot eat the others' time; a step's figures that are ratios are measured in that one process.
The on-disk Waterbirds-format folder is written in the background while the first steps run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "make bench-gpu"


@dataclass(frozen=True)
class Sizes:
    """The sizes one run measures at: the real ones on a GPU, tiny ones for the dry run."""

    device: str
    model: str
    image_size: int
    batch_size: int
    timed_steps: int
    warmup_steps: int
    splits: tuple[int, int, int]
    erm_epochs: int
    attention_epochs: int
    gradia_images: int
    feature_images: int
    amp: str  # the training precision: bf16 on a GPU; float32 in the CPU dry run, where bf16 is emulated and much slower
    limits: dict[str, int] = field(default_factory=dict)


REAL = Sizes(
    device="cuda",
    model="resnet50",
    image_size=224,
    batch_size=128,
    timed_steps=20,
    warmup_steps=5,
    splits=(4795, 1199, 5794),
    erm_epochs=2,
    attention_epochs=10,
    gradia_images=64,
    feature_images=4096,
    amp="bf16",
    limits={"cuda-tests": 100, "steps": 60, "gradia-pruning": 40, "folder": 150, "loading": 30, "real-size": 190},
)
DRY = Sizes(
    device="cpu",
    model="resnet18",
    image_size=64,
    batch_size=4,
    timed_steps=2,
    warmup_steps=1,
    splits=(24, 8, 8),
    erm_epochs=1,
    attention_epochs=1,
    gradia_images=4,
    feature_images=16,
    amp="none",
    limits={"cuda-tests": 60, "steps": 120, "gradia-pruning": 60, "folder": 60, "loading": 60, "real-size": 120},
)

STEP_RATIO_GOAL = 1.2
THROUGHPUT_GOAL = 0.8


# ---------------------------------------------------------------------------------------------
# The steps (each runs in a child process: ``gpu.py --step NAME``) and their helpers.


def _precision(amp: str) -> str:
    return "float32" if amp == "none" else amp


def _synchronise(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def _timed(device, work) -> tuple[float, object]:
    _synchronise(device)
    start = time.perf_counter()
    result = work()
    _synchronise(device)
    return time.perf_counter() - start, result


def _model(sizes: Sizes, device):
    import torch

    from crayon_plugins import create_backbone

    torch.manual_seed(0)
    return create_backbone("timm", {"model": sizes.model, "feature_stage": "whole"}).build(2).to(device)


def step_steps(sizes: Sizes, work: Path) -> dict:
    """crayon-attention step / ERM step through ``fit``; ERM through ``fit`` against a plain loop."""
    import copy

    import torch
    import torch.nn.functional as F
    from crayon_plugins.plugins.refiners.crayon_attention import CrayonAttention, Guidance

    from crayon_plugins.annotation.records import Answer
    from crayon_plugins.api.finetuning import Batch
    from crayon_plugins.config import Optimisation
    from crayon_plugins.data.items import Loading, TensorItems
    from crayon_plugins.training.loop import fit

    device = torch.device(sizes.device)
    n = sizes.batch_size * sizes.timed_steps
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, sizes.image_size, sizes.image_size, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    on_device, labels_on_device = images.to(device), labels.to(device)
    optimisation = Optimisation(epochs=1, lr=5e-5, batch_size=sizes.batch_size, amp=sizes.amp)
    model = _model(sizes, device)
    with torch.no_grad():
        grid = model.eval().features(on_device[:1]).shape[-2:]
    shares = {Answer.NO: 0.032, Answer.YES: 0.712, Answer.MAYBE: 0.256}  # what Waterbirds' annotators answered
    answers = torch.tensor(list(shares))[torch.multinomial(torch.tensor(list(shares.values())), n, replacement=True, generator=g)]
    guidance = Guidance(torch.rand(n, *grid, generator=g), answers, int((answers == Answer.NO).sum()), int((answers == Answer.YES).sum()))
    attention = CrayonAttention(CrayonAttention.Params(amp=sizes.amp, batch_size=sizes.batch_size))
    print(f"  {sizes.model} at {sizes.image_size} px, batch {sizes.batch_size}, {_precision(sizes.amp)}, on {device}; Grad-CAM grid {tuple(grid)}", flush=True)

    def erm_loss(net):
        return lambda i, x: F.cross_entropy(net(x.to(device, non_blocking=True)), labels_on_device[i.to(device)])

    def attention_loss(net):
        return lambda i, x: attention.loss(net, Batch(i, x.to(device, non_blocking=True), labels_on_device[i.to(device)]), guidance)

    def through_fit(loss, items, steps: int) -> float:
        net = copy.deepcopy(model)
        fit(net, loss(net), sizes.batch_size * sizes.warmup_steps, optimisation, 0, "warm-up", images=items)
        seconds, _ = _timed(device, lambda: fit(net, loss(net), sizes.batch_size * steps, optimisation, 0, "timed", images=items))
        return sizes.batch_size * steps / seconds

    def plain_loop() -> float:
        net = copy.deepcopy(model).train()
        optimiser = torch.optim.Adam(net.parameters(), lr=5e-5)

        def one(step: int) -> None:
            x = on_device[(step % sizes.timed_steps) * sizes.batch_size :][: sizes.batch_size]
            y = labels_on_device[(step % sizes.timed_steps) * sizes.batch_size :][: sizes.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sizes.amp == "bf16"):
                loss = F.cross_entropy(net(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        for step in range(sizes.warmup_steps):
            one(step)
        seconds, _ = _timed(device, lambda: [one(step) for step in range(sizes.timed_steps)])
        return n / seconds

    resident = TensorItems(on_device)
    host = TensorItems(images).with_loading(Loading(0, device.type == "cuda"))
    figures = {}
    figures["plain_images_per_s"] = plain_loop()
    print(f"  plain PyTorch loop, data on the device: {figures['plain_images_per_s']:.0f} images/s", flush=True)
    figures["erm_device_images_per_s"] = through_fit(erm_loss, resident, sizes.timed_steps)
    print(f"  ERM through fit, data on the device:    {figures['erm_device_images_per_s']:.0f} images/s", flush=True)
    figures["erm_host_images_per_s"] = through_fit(erm_loss, host, sizes.timed_steps)
    print(f"  ERM through fit, data in host memory:   {figures['erm_host_images_per_s']:.0f} images/s", flush=True)
    figures["attention_device_images_per_s"] = through_fit(attention_loss, resident, sizes.timed_steps)
    print(f"  crayon-attention through fit, on device: {figures['attention_device_images_per_s']:.0f} images/s", flush=True)
    figures["step_ratio"] = figures["erm_device_images_per_s"] / figures["attention_device_images_per_s"]
    figures["throughput_ratio"] = figures["erm_host_images_per_s"] / figures["plain_images_per_s"]
    figures["loop_ratio"] = figures["erm_device_images_per_s"] / figures["plain_images_per_s"]
    print(f"  crayon-attention step / ERM step = {figures['step_ratio']:.3f} (goal ≤ {STEP_RATIO_GOAL})", flush=True)
    print(f"  ERM images/s / plain loop = {figures['throughput_ratio']:.3f} (goal ≥ {THROUGHPUT_GOAL}); data on the device: {figures['loop_ratio']:.3f}", flush=True)
    if device.type == "cuda":
        figures["profile"] = _profile(model, attention_loss, erm_loss, resident, optimisation, sizes)
    return figures


def _profile(model, attention_loss, erm_loss, items, optimisation, sizes: Sizes) -> dict:
    """Where a step's time goes: the ten CUDA kernels that take most time in a few steps of each."""
    import copy

    from torch.profiler import ProfilerActivity, profile

    from crayon_plugins.training.loop import fit

    found = {}
    for name, loss in (("erm", erm_loss), ("crayon-attention", attention_loss)):
        net = copy.deepcopy(model)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fit(net, loss(net), sizes.batch_size * 3, optimisation, 0, f"profile {name}", images=items)
        found[name] = prof.key_averages().table(sort_by="cuda_time_total", row_limit=10)
    return found


def step_gradia_pruning(sizes: Sizes, work: Path) -> dict:
    """GRADIA's Grad-CAM image by image against the batched form (train mode, as GRADIA trains), and
    pruning's feature pass."""
    import torch

    from crayon_plugins.data.items import TensorItems
    from crayon_plugins.model.features import pooled_features
    from crayon_plugins.model.gradcam import GradiaGradCam

    device = torch.device(sizes.device)
    model = _model(sizes, device).train()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(sizes.gradia_images, 3, sizes.image_size, sizes.image_size, generator=g).to(device)
    targets = torch.randint(0, 2, (sizes.gradia_images,), generator=g).to(device)
    gradcam = GradiaGradCam()

    def batched():
        maps, _ = gradcam.explain(model, images, targets)
        maps.sum().backward()
        return maps.detach()

    def per_image():
        found = []
        for i in range(len(images)):
            maps, _ = gradcam.explain(model, images[i : i + 1], targets[i : i + 1])
            maps.sum().backward()
            found.append(maps.detach())
        return torch.cat(found)

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sizes.amp == "bf16"):
        batched(), per_image()  # warm-up
        batched_s, batched_maps = _timed(device, batched)
        single_s, single_maps = _timed(device, per_image)
    figures = {
        "gradia_batched_images_per_s": len(images) / batched_s,
        "gradia_per_image_images_per_s": len(images) / single_s,
        "gradia_max_map_difference": float((batched_maps - single_maps).abs().max()),
    }
    print(f"  GRADIA Grad-CAM + backward, batched:   {figures['gradia_batched_images_per_s']:.0f} images/s", flush=True)
    print(f"  GRADIA Grad-CAM + backward, per image: {figures['gradia_per_image_images_per_s']:.0f} images/s", flush=True)
    print(f"  largest difference between the two forms' maps (train-mode batch norm): {figures['gradia_max_map_difference']:.3f}", flush=True)

    features = TensorItems(torch.rand(sizes.feature_images, 3, sizes.image_size, sizes.image_size, generator=g))
    model.eval()
    pooled_features(model, TensorItems(features.tensor[: sizes.batch_size]), device)  # warm-up
    seconds, _ = _timed(device, lambda: pooled_features(model, features, device))
    figures["feature_pass_images_per_s"] = sizes.feature_images / seconds
    print(f"  pruning's feature pass (pooled features, fp32, from host memory): {figures['feature_pass_images_per_s']:.0f} images/s", flush=True)
    return figures


def step_folder(sizes: Sizes, work: Path) -> dict:
    """A Waterbirds-format folder with the real split sizes at the real resolution."""
    from crayon_plugins.testing.benchmark_folders import write_waterbirds

    start = time.perf_counter()
    write_waterbirds(work / "waterbirds", *sizes.splits, image_size=sizes.image_size)
    seconds = time.perf_counter() - start
    print(f"  wrote {sum(sizes.splits)} images ({' / '.join(map(str, sizes.splits))}) at {sizes.image_size} px in {seconds:.0f} s", flush=True)
    return {"folder_seconds": seconds, "folder_images": sum(sizes.splits)}


def _pipeline(sizes: Sizes, work: Path, refiners: list[str]):
    from crayon_plugins import Pipeline, RunConfig
    from crayon_plugins.run.cache import ArtefactCache

    fast = {"amp": sizes.amp, "batch_size": sizes.batch_size}
    config = RunConfig(
        device=sizes.device,
        dataset={"name": "waterbirds", "root": str(work / "waterbirds"), "image_size": sizes.image_size},
        backbone={"name": "timm", "model": sizes.model, "feature_stage": "whole"},
        training={"epochs": sizes.erm_epochs, "lr": 1e-3, "batch_size": sizes.batch_size, "amp": sizes.amp},
        refiners=refiners,
        refiner={"crayon-attention": {**fast, "epochs": sizes.attention_epochs, "lr": 5e-5, "weight_decay": 1e-4}, "crayon-pruning": {"max_pruned": 1.0}},
    )
    return Pipeline.from_config(config, cache=ArtefactCache(work / "cache"))


def step_loading(sizes: Sizes, work: Path) -> dict:
    """Images/s the on-disk training split arrives at, with the run's workers and pinned memory, as
    ERM reads it (augmented) and as the other stages read it."""
    import torch

    from crayon_plugins.run.stages.load import load, loading

    pipeline = _pipeline(sizes, work, [])
    device = pipeline.device
    train = load(pipeline, "train")
    options = loading(pipeline)
    figures = {"workers": options.num_workers, "pin_memory": options.pin_memory}
    for name, images in (("augmented", train.images.augmented()), ("plain", train.images)):
        count = 0

        def read():
            nonlocal count
            for _, batch in images.batches(torch.arange(len(images)), sizes.batch_size, torch.Generator().manual_seed(0)):
                batch.to(device, non_blocking=True)
                count += len(batch)

        seconds, _ = _timed(device, read)
        figures[f"loading_{name}_images_per_s"] = count / seconds
        print(f"  {name} training images from disk, {options.num_workers} workers, pinned {options.pin_memory}: {count / seconds:.0f} images/s", flush=True)
    return figures


def step_real_size(sizes: Sizes, work: Path) -> dict:
    """CRAYON's Waterbirds setting at real size: seconds and peak GPU memory of every stage."""
    from crayon_plugins.run.stages.evaluate import evaluate
    from crayon_plugins.run.stages.explain import concepts, original_maps, shared_features
    from crayon_plugins.run.stages.load import load
    from crayon_plugins.run.stages.original import original_model
    from crayon_plugins.run.stages.refine import refine, refinement_context

    pipeline = _pipeline(sizes, work, ["crayon-attention", "crayon-pruning"])
    device = pipeline.device
    train, val, test = (load(pipeline, name) for name in ("train", "val", "test"))
    stages: dict[str, dict] = {}

    def stage(name: str, work):
        _peak_reset(device)
        seconds, result = _timed(device, work)
        stages[name] = {"seconds": seconds, "peak_gib": _peak_gib(device)}
        peak = f", peak {stages[name]['peak_gib']:.1f} GiB" if stages[name]["peak_gib"] is not None else ""
        print(f"  {name:<38} {seconds:8.1f} s{peak}", flush=True)
        return result

    model = stage(f"ERM ({sizes.erm_epochs} epochs)", lambda: original_model(pipeline, train)).model
    stage("explanation (Grad-CAM of train)", lambda: original_maps(pipeline, model, train))
    features = stage("pooled features (train, val, test)", lambda: {n: shared_features(pipeline, model, s, n) for n, s in (("train", train), ("val", val), ("test", test))})
    stage("concepts (top patches)", lambda: concepts(pipeline, model, train))
    context = stage("answers (maps and neurons)", lambda: refinement_context(pipeline, model, train))
    shares = train.group_shares()
    refined = {}
    for name in pipeline.refiners:
        epochs = getattr(pipeline.refiners[name].params, "epochs", None)
        refined[name] = stage(f"{name} ({epochs} epochs)", lambda: refine(pipeline, name, model, context))
    for name, net in {"original": model, **refined}.items():
        stage(f"evaluation of {name}", lambda: evaluate(pipeline, net, features["test"], test, shares, {}))
    return {"stages": stages, "splits": [len(train), len(val), len(test)]}


STEPS = {"steps": step_steps, "gradia-pruning": step_gradia_pruning, "folder": step_folder, "loading": step_loading, "real-size": step_real_size}


# ---------------------------------------------------------------------------------------------
# The driver: runs each step under its time limit, then writes the report.


def _run_child(name: str, work: Path, dry_run: bool, log: Path | None = None) -> subprocess.Popen:
    """Start step ``name`` in a process of its own; its output goes to ours, or to ``log``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--work", str(work), *(["--dry-run"] if dry_run else [])]
    output = None if log is None else log.open("w")
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=output, stderr=subprocess.STDOUT if log else None)


def _finish(process: subprocess.Popen, name: str, limit: float, work: Path) -> dict:
    limit = max(1.0, limit)
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"  {name}: stopped at its time limit of {limit:.0f} s", flush=True)
        return {"status": f"timed out after {limit:.0f} s"}
    found = work / f"{name}.json"
    if process.returncode != 0 or not found.exists():
        return {"status": f"failed (exit code {process.returncode}; its error is printed above)"}
    return {"status": "ok", **json.loads(found.read_text())}


def _cuda_tests(sizes: Sizes, dry_run: bool) -> dict:
    targets = ["tests/test_cuda.py"] if dry_run else ["tests"]
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", *targets]
    limit = sizes.limits["cuda-tests"]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {limit} s"}
    output = done.stdout + done.stderr
    print("\n".join("  " + line for line in output.strip().splitlines()[-12:]), flush=True)
    summary = next((line.strip("= ") for line in reversed(output.splitlines()) if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)), "no summary line")
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    return {"status": "ok" if done.returncode in (0, 5) else f"failed (pytest exit code {done.returncode})", "summary": summary, **counts}


def environment(device: str) -> dict:
    import timm
    import torch

    found = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
    }
    if device == "cuda" and torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
        found["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True)
            found["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else "unknown"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every step at tiny sizes on the CPU (what `make test` runs)")
    parser.add_argument("--out", type=Path, default=None, help="the report to write (default: docs/gpu.md; with --dry-run, nothing unless given)")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = DRY if args.dry_run else REAL
    if args.step:  # a child: one step, its figures as JSON
        os.environ.setdefault("CRAYON_PROGRESS", "0")
        figures = STEPS[args.step](sizes, args.work)
        (args.work / f"{args.step}.json").write_text(json.dumps(figures))
        return 0

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("make bench-gpu: torch sees no CUDA device here; `python benchmarks/gpu.py --dry-run` runs the same steps at tiny sizes on the CPU", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else (None if args.dry_run else ROOT / "docs" / "gpu.md")
    started = time.perf_counter()
    figures: dict = {"environment": environment(sizes.device), "sizes": asdict(sizes)}
    print(f"GPU figures on {figures['environment'].get('gpu', sizes.device)} (torch {figures['environment']['torch']}, CUDA {figures['environment']['cuda']})", flush=True)
    with tempfile.TemporaryDirectory(prefix="crayon-bench-gpu-") as temporary:
        work = Path(temporary)
        os.environ["CRAYON_CACHE_DIR"] = str(work / "cache")
        folder = _run_child("folder", work, args.dry_run, log=work / "folder.log")
        folder_started = time.perf_counter()
        print("\n[cuda-tests] pytest -m cuda", flush=True)
        figures["cuda-tests"] = _cuda_tests(sizes, args.dry_run)
        for name in ("steps", "gradia-pruning"):
            print(f"\n[{name}]", flush=True)
            figures[name] = _finish(_run_child(name, work, args.dry_run), name, sizes.limits[name], work)
        print("\n[folder] a Waterbirds-format folder at real size, written in the background", flush=True)
        figures["folder"] = _finish(folder, "folder", sizes.limits["folder"] - (time.perf_counter() - folder_started), work)
        print("\n".join("  " + line for line in (work / "folder.log").read_text().strip().splitlines()[-3:]), flush=True)
        for name in ("loading", "real-size"):
            print(f"\n[{name}]", flush=True)
            if figures["folder"]["status"] != "ok":
                figures[name] = {"status": "not run: the folder step did not finish"}
                continue
            figures[name] = _finish(_run_child(name, work, args.dry_run), name, sizes.limits[name], work)
    figures["seconds"] = time.perf_counter() - started
    figures["extrapolation"] = extrapolate(figures)
    print(f"\nall steps in {figures['seconds']:.0f} s", flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report(figures, args.dry_run))
        (out.with_suffix(".json")).write_text(json.dumps(figures, indent=1))
        print(f"wrote {out} and {out.with_suffix('.json')}", flush=True)
    failed = [name for name in ("cuda-tests", "steps", "gradia-pruning", "folder", "loading", "real-size") if figures[name]["status"] != "ok"]
    if failed:
        print(f"steps that did not finish: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# The whole comparison, extrapolated from the measured figures.

DATASETS = {
    # name: (train, val, test-like evaluation images), the real sizes
    "Waterbirds": (4795, 1199, 5794),
    "Biased CelebA": (20200, 800, 7200),
    "Backgrounds Challenge": (45405, 405, 4 * 4050 - 405),
}
"""Biased CelebA: the published 20,200-row training file and ≈8,000-row test file, a tenth of which is
held out for validation; Backgrounds Challenge: ImageNet-9's 45,405 training images, and its 4,050
validation images four times (original, mixed-same, mixed-random, only-foreground), a tenth of the
original held out for validation."""

ORIGINAL_EPOCHS = 10
"""Epochs of the original model's ERM training assumed for every dataset (the run's default is 6)."""

METHODS = {
    # name: (cost, epochs per dataset in DATASETS' order); the epochs are the CRAYON authors'
    # published settings; cost: "erm" / "attention" / "gradia" (measured per training image),
    # "features" (a pass of pooled features), or a multiple of the ERM step (assumed, not measured)
    "crayon-attention": ("attention", (10, 10, 10)),
    "crayon-pruning": ("features", (10, 50, 10)),
    "crayon-attention+pruning": ("attention", (10, 10, 10)),
    "gradia": ("gradia", (10, 10, 5)),
    "rrr": ("attention", (10, 5, 10)),
    "gradmask": ("attention", (10, 10, 10)),
    "actdiff": (2.0, (10, 10, 10)),
    "bounding-box": ("attention", (10, 10, 10)),
    "jtt": ("erm", (60, 30, 10)),
    "masktune": ("erm", (1, 1, 1)),
    "lff": (2.0, (50, 50, 1)),
    "softcon": (1.5, (10, 10, 10)),
    "flac": (1.5, (20, 5, 5)),
    "lc": (2.0, (50, 50, 10)),
    "cnc": (2.0, (10, 5, 10)),
    "dfr": ("features", (1, 1, 1)),
}

SEEDS = 5


def extrapolate(figures: dict) -> dict | None:
    """GPU-hours of the whole comparison from the measured per-image costs, or ``None`` when a figure
    it needs is missing. Every training image is read from disk at most as fast as the loading step
    measured, so a step faster than the input pipeline costs the loading time."""
    steps, gradia, loading = figures.get("steps", {}), figures.get("gradia-pruning", {}), figures.get("loading", {})
    if not all(f.get("status") == "ok" for f in (steps, gradia, loading)):
        return None
    read = loading["loading_augmented_images_per_s"]
    per_image = {
        "erm": 1 / min(steps["erm_device_images_per_s"], read),
        "attention": 1 / min(steps["attention_device_images_per_s"], read),
        "gradia": 1 / min(gradia["gradia_per_image_images_per_s"] / 1.5, read),  # + the forward and CE of the step: ×1.5 assumed
        "features": 1 / min(gradia["feature_pass_images_per_s"], loading["loading_plain_images_per_s"]),
    }
    evaluate = per_image["features"]
    rows, total = [], 0.0
    for dataset, (n_train, n_val, n_eval) in DATASETS.items():
        column = list(DATASETS).index(dataset)
        original = ORIGINAL_EPOCHS * (n_train * per_image["erm"] + n_val * evaluate) + 2 * n_eval * evaluate
        rows.append({"dataset": dataset, "method": "original (ERM)", "epochs": ORIGINAL_EPOCHS, "cost": "erm", "seconds": original})
        total += original
        for method, (cost, epochs) in METHODS.items():
            e = epochs[column]
            if cost == "features":  # one pass over the training images; the last layer trains on the cached features
                seconds = n_train * per_image["features"] + n_val * evaluate + 2 * n_eval * evaluate
            else:
                step = per_image[cost] if isinstance(cost, str) else cost * per_image["erm"]
                seconds = e * (n_train * step + n_val * evaluate) + 2 * n_eval * evaluate  # evaluation: predictions and the test maps
            rows.append({"dataset": dataset, "method": method, "epochs": e, "cost": cost, "seconds": seconds})
            total += seconds
    return {"per_image_seconds": per_image, "rows": rows, "seeds": SEEDS, "gpu_hours": SEEDS * total / 3600}


# ---------------------------------------------------------------------------------------------
# The report.


def _f(value, digits: int = 0, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def report(figures: dict, dry_run: bool) -> str:
    env, sizes = figures["environment"], figures["sizes"]
    where = f"{env.get('gpu', 'the CPU (dry run)')}" + (f", {env['gpu_memory_gib']} GiB, driver {env.get('driver', 'unknown')}" if "gpu" in env else "")
    lines = [
        "# GPU figures",
        "",
        f"Measured on {env['date']} on {where}; torch {env['torch']} (CUDA {env['cuda']}), timm {env['timm']}, Python {env['python']}, {env['cpus']} CPU cores.",
        f"Reproduce with `{COMMAND}` (`python benchmarks/gpu.py`); all steps took {figures['seconds']:.0f} s.",
    ]
    if dry_run:
        lines += ["", "**Dry run**: tiny sizes on the CPU. These numbers only show that the script runs; they say nothing about a GPU."]
    lines += ["", "## CUDA tests (`pytest -m cuda`)", "", f"{figures['cuda-tests'].get('summary', figures['cuda-tests']['status'])}"]

    steps = figures["steps"]
    lines += ["", f"## The training step: {sizes['model']} at {sizes['image_size']} px, batch {sizes['batch_size']}, {_precision(sizes['amp'])}", ""]
    if steps["status"] == "ok":
        verdict = lambda ok: "meets the goal" if ok else "misses the goal"  # noqa: E731
        lines += [
            "| measured in one process | images/s |",
            "|---|---:|",
            f"| plain PyTorch loop (timm's benchmark style: synthetic tensors on the device) | {_f(steps['plain_images_per_s'])} |",
            f"| ERM through the framework's `fit`, synthetic tensors on the device | {_f(steps['erm_device_images_per_s'])} |",
            f"| ERM through `fit`, synthetic tensors in host memory (copied each step) | {_f(steps['erm_host_images_per_s'])} |",
            f"| crayon-attention through `fit`, tensors on the device | {_f(steps['attention_device_images_per_s'])} |",
            "",
            f"- crayon-attention step / ERM step: **{steps['step_ratio']:.3f}** (goal ≤ {STEP_RATIO_GOAL}: {verdict(steps['step_ratio'] <= STEP_RATIO_GOAL)}).",
            f"- ERM images/s / plain loop: **{steps['throughput_ratio']:.3f}** (goal ≥ {THROUGHPUT_GOAL}: {verdict(steps['throughput_ratio'] >= THROUGHPUT_GOAL)}); with the data already on the device {steps['loop_ratio']:.3f}.",
        ]
        for name, table in steps.get("profile", {}).items():
            lines += ["", f"<details><summary>Profile of three {name} steps (top CUDA kernels)</summary>", "", "```", table.rstrip(), "```", "</details>"]
    else:
        lines.append(steps["status"])

    gradia = figures["gradia-pruning"]
    lines += ["", "## GRADIA's Grad-CAM and pruning's feature pass", ""]
    if gradia["status"] == "ok":
        lines += [
            f"- GRADIA's Grad-CAM and its backward, train mode, {_precision(sizes['amp'])}: batched {_f(gradia['gradia_batched_images_per_s'])} images/s, "
            f"image by image {_f(gradia['gradia_per_image_images_per_s'])} images/s "
            f"({gradia['gradia_batched_images_per_s'] / gradia['gradia_per_image_images_per_s']:.1f}× apart); "
            f"their maps differ by up to {gradia['gradia_max_map_difference']:.3f} (0–1 scale: batch norm's statistics in train mode).",
            f"- Pruning's feature pass (pooled features, fp32): {_f(gradia['feature_pass_images_per_s'])} images/s.",
        ]
    else:
        lines.append(gradia["status"])

    loading, folder = figures["loading"], figures["folder"]
    lines += ["", "## Data loading from disk", ""]
    if loading["status"] == "ok":
        erm = steps.get("erm_device_images_per_s") if steps["status"] == "ok" else None
        attention = steps.get("attention_device_images_per_s") if steps["status"] == "ok" else None
        read = loading["loading_augmented_images_per_s"]
        lines += [
            f"A generated Waterbirds-format folder ({folder['folder_images']:,} JPEGs at {sizes['image_size']} px, written in {folder['folder_seconds']:.0f} s), "
            f"{loading['workers']} decoding workers, pinned memory {'on' if loading['pin_memory'] else 'off'}:",
            "",
            f"- augmented (as ERM reads it): {_f(read)} images/s; plain (every other stage): {_f(loading['loading_plain_images_per_s'])} images/s.",
        ]
        if erm is not None:
            bottleneck = lambda rate, name: f"{name} computes {_f(rate)} images/s, so the **{'input pipeline' if read < rate else 'training step'}** is the bottleneck"  # noqa: E731
            lines.append(f"- {bottleneck(erm, 'ERM')}; {bottleneck(attention, 'crayon-attention')}.")
    else:
        lines.append(loading["status"] if folder["status"] == "ok" else f"folder: {folder['status']}")

    real = figures["real-size"]
    lines += ["", f"## CRAYON's Waterbirds setting at real size", ""]
    if real["status"] == "ok":
        n = real["splits"]
        lines += [
            f"{n[0]:,} / {n[1]:,} / {n[2]:,} images at {sizes['image_size']} px, {sizes['model']} (randomly initialised: timings do not depend on the weights), "
            f"batch {sizes['batch_size']}, {_precision(sizes['amp'])}, the oracle's answers, validation after every epoch.",
            "",
            "| stage | seconds | peak GPU memory |",
            "|---|---:|---:|",
            *[f"| {name} | {stage['seconds']:.1f} | {_f(stage['peak_gib'], 1, ' GiB')} |" for name, stage in real["stages"].items()],
            f"| **all** | **{sum(s['seconds'] for s in real['stages'].values()):.1f}** | |",
        ]
    else:
        lines.append(real["status"])

    lines += ["", "## The whole comparison, extrapolated", ""]
    found = figures["extrapolation"]
    if found is None:
        lines.append("Not computed: a step it needs did not finish.")
    else:
        per = found["per_image_seconds"]
        lines += [
            "Seconds per training image and epoch, each the slower of the measured step and the measured reading from disk: "
            + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in per.items())
            + f". A method's seconds = epochs × (train × its cost + val × features) + 2 × test-like images × features (predictions and maps); "
            f"`crayon-pruning` and DFR read the training images once. Costs given as a number are that multiple of the ERM step, "
            f"assumed, not measured (two networks, or two forward passes). The original model: {ORIGINAL_EPOCHS} ERM epochs (assumed). "
            "Epochs: the CRAYON authors' published settings. Sizes: Waterbirds 4,795 / 1,199 / 5,794; Biased CelebA 20,200 / 800 / 7,200; "
            "Backgrounds Challenge 45,405 / 405 / 15,795 (the four 4,050-image validation variants).",
            "",
            "| method | cost | " + " | ".join(f"{d}: epochs, seconds a seed" for d in DATASETS) + " |",
            "|---|---|" + "---:|" * len(DATASETS),
        ]
        for method in dict.fromkeys(r["method"] for r in found["rows"]):
            cells = {r["dataset"]: r for r in found["rows"] if r["method"] == method}
            cost = next(iter(cells.values()))["cost"]
            lines.append(f"| {method} | {cost if isinstance(cost, str) else f'{cost:g} × erm'} | " + " | ".join(f"{cells[d]['epochs']}, {cells[d]['seconds']:,.0f}" for d in DATASETS) + " |")
        sums = {d: sum(r["seconds"] for r in found["rows"] if r["dataset"] == d) for d in DATASETS}
        lines += [
            "| **all methods** | | " + " | ".join(f"**{sums[d]:,.0f}**" for d in DATASETS) + " |",
            "",
            f"({' + '.join(f'{v:,.0f}' for v in sums.values())}) s × {found['seeds']} seeds / 3,600 = **{found['gpu_hours']:.1f} GPU-hours** on this GPU.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
