"""Memory is bounded by the batch, not the dataset: peak RSS of the same run on 20,000 and on 2,000
images of a generated Waterbirds-format folder at 224 px, and each stage's throughput.

    python benchmarks/streaming_memory.py [--large 20000] [--small 2000] [--data runs/bench-data]

Each size runs in a fresh process: ERM training of the original model (one epoch), its Grad-CAM
maps of the training split, and its evaluation on the test split, with a small backbone
(``mobilenetv3_small_050``) and the default loading options. The target: the large run's peak RSS is
at most 1.3 times the small one's, for the main process and for the decoding workers alike. The
folders are generated once (a few minutes for 20,000 images, 1.6 GB) and reused.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crayon_plugins.run.stages.evaluate import evaluate
from crayon_plugins.run.stages.explain import original_maps, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model

TARGET = 1.3
BACKBONE = {"name": "timm", "model": "mobilenetv3_small_050", "feature_stage": "whole"}


def measure(root: Path) -> dict:
    """Run the stages on the Waterbirds folder ``root`` in this process; seconds, item counts and
    peak RSS (MiB) of this process and of its (finished) decoding workers."""
    import torch

    from crayon_plugins.config import RunConfig
    from crayon_plugins.run.cache import ArtefactCache
    from crayon_plugins.run.pipeline import Pipeline
    from crayon_plugins.utils.progress import set_enabled

    set_enabled(False)
    config = RunConfig.model_validate(
        {
            "device": "cpu",
            "dataset": {"name": "waterbirds", "root": str(root)},
            "backbone": BACKBONE,
            "training": {"epochs": 1, "batch_size": 64},
            "refiners": [],
            "metrics": ["accuracy", "group-accuracy"],
        }
    )
    with tempfile.TemporaryDirectory() as cache:
        pipeline = Pipeline.from_config(config, cache=ArtefactCache(cache))
        train, val, test = load(pipeline, "train"), load(pipeline, "val"), load(pipeline, "test")
        start = time.perf_counter()
        model = original_model(pipeline, train).model
        trained = time.perf_counter()
        maps = original_maps(pipeline, model, train)
        explained = time.perf_counter()
        features = shared_features(pipeline, model, test, "test")
        metrics = evaluate(pipeline, model, features, test, train.group_shares(), {})
        evaluated = time.perf_counter()
    assert maps.shape[0] == len(train) and torch.isfinite(maps).all()
    mib = lambda who: resource.getrusage(who).ru_maxrss / 1024  # noqa: E731  (KiB on Linux)
    return {
        "train": len(train), "val": len(val), "test": len(test),
        "seconds": {"erm": trained - start, "explain": explained - trained, "evaluate": evaluated - explained},
        "wga": metrics["wga"],
        "rss_main": mib(resource.RUSAGE_SELF), "rss_workers": mib(resource.RUSAGE_CHILDREN),
    }


def folder(data: Path, n: int) -> Path:
    """The generated Waterbirds folder of ``n`` images (written the first time)."""
    root = data / f"waterbirds-{n}"
    if not (root / "metadata.csv").is_file():
        script = Path(__file__).with_name("make_waterbirds.py")
        subprocess.run([sys.executable, str(script), str(root), "--n", str(n), "--size", "224", "--no-segmentations"], check=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=Path("runs/bench-data"))
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    runs = {}
    for n in (args.small, args.large):
        root = folder(args.data, n)
        done = subprocess.run([sys.executable, __file__, "--measure", str(root)], check=True, capture_output=True, text=True)
        runs[n] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"streaming on a Waterbirds-format folder at 224 px, backbone {BACKBONE['model']}, one ERM epoch (command: python {' '.join(sys.argv)})")
    print(f"{'images':>8} {'train/val/test':>16} {'peak RSS main':>14} {'workers':>9} {'ERM img/s':>10} {'explain img/s':>14} {'evaluate img/s':>15}")
    for n, r in runs.items():
        s = r["seconds"]
        print(
            f"{n:>8} {r['train']:>6}/{r['val']}/{r['test']:<6} {r['rss_main']:>10.0f} MiB {r['rss_workers']:>5.0f} MiB "
            f"{(r['train'] + r['val']) / s['erm']:>10.1f} {r['train'] / s['explain']:>14.1f} {r['test'] / s['evaluate']:>15.1f}"
        )
    small, large = runs[args.small], runs[args.large]
    ratios = {who: large[who] / small[who] for who in ("rss_main", "rss_workers") if small[who] > 0}
    verdict = "met" if all(r <= TARGET for r in ratios.values()) else "NOT met"
    print("peak RSS ratio, large / small: " + ", ".join(f"{who.removeprefix('rss_')} {r:.2f}" for who, r in ratios.items()) + f" (target ≤ {TARGET}: {verdict})")
    print("ERM img/s counts the training images and the validation pass after the epoch.")


if __name__ == "__main__":
    main()
