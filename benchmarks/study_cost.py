"""Cost of a 5 × 5 budget × noise study of crayon-pruning: against one crayon-pruning run, and on
Ray against local processes.

The target: the 25 cells cost at most twice one ``crayon run --refiners crayon-pruning``,
because they share the original model, maps, concepts, pooled features and panel answers through the
cache. And the same study on ``--executor ray`` (a Ray instance the study starts on this
machine, as many CPUs as cores) against ``--executor local``, each cell with as many threads as
cores (one seed: the first wave is one original model), so Ray's overhead per cell is known. All
are timed from an empty cache of their own, one after the other, as the commands a user types, on
the default benchmark.

Run with ``make bench`` (or ``python benchmarks/study_cost.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crayon_plugins.study.spec import load_spec
from crayon_plugins.utils.progress import console

TARGET = 2.0
CONFIG = 'refiners = ["crayon-pruning"]\nmetrics = ["accuracy", "group-accuracy"]\n'
GRID = """title = "5 x 5 budget x noise grid of crayon-pruning"
threads = {threads}  # one seed: the first wave is one original model, which should use every core, as crayon run does
[base]
{config}
[grid]
budget = [0.1, 0.25, 0.5, 0.75, 1.0]
flip_rate = [0.0, 0.05, 0.1, 0.2, 0.3]
"""


def timed(args: list[str], cache: Path) -> float:
    """Seconds ``crayon ARGS`` takes with an empty cache at ``cache``."""
    env = {**os.environ, "CRAYON_CACHE_DIR": str(cache), "CRAYON_PROGRESS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from crayon_plugins.cli import main; main()", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "run.toml").write_text(CONFIG)
        (root / "grid.toml").write_text(GRID.format(threads=os.cpu_count() or 1, config=CONFIG.replace('refiners = ["crayon-pruning"]\n', "")).replace("[grid]", '[grid]\nrefiner = ["crayon-pruning"]'))
        one = timed(["run", "--config", str(root / "run.toml"), "--out", str(root / "run")], root / "cache-run")
        grid = timed(["study", "run", str(root / "grid.toml"), "--out", str(root / "grid")], root / "cache-grid")
        ray = timed(["study", "run", str(root / "grid.toml"), "--out", str(root / "grid-ray"), "--executor", "ray"], root / "cache-ray")
        same = (root / "grid" / "results.csv").read_bytes() == (root / "grid-ray" / "results.csv").read_bytes()
        cells = len({cell.key for cell in load_spec(root / "grid.toml").cells()})
    cores = os.cpu_count()
    console.print(f"one crayon-pruning run (crayon run, empty cache)                    {one:7.1f} s")
    console.print(f"5 × 5 budget × noise study, {cells} cells, {cores} threads, local         {grid:7.1f} s")
    console.print(f"the same study on Ray ({cores} CPUs, Ray started by the study)         {ray:7.1f} s")
    ratio = grid / one
    verdict = "[green]meets[/]" if ratio <= TARGET else "[red]misses[/]"
    console.print(f"study / one run = {ratio:.2f} ({verdict} the target ≤ {TARGET})")
    console.print(f"Ray / local = {ray / grid:.2f}: {(ray - grid) / cells:+.2f} s per cell, Ray's start included; results.csv {'byte-identical' if same else '[red]DIFFERS[/]'}")


if __name__ == "__main__":
    main()
