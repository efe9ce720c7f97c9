"""Cost of a 5 × 5 budget × noise study of crayon-pruning against one crayon-pruning run.

Issue 5's target: the 25 cells cost at most twice one ``crayon run --refiners crayon-pruning``,
because they share the original model, maps, concepts, pooled features and panel answers through the
cache. Both are timed here from an empty cache of their own, one after the other, as the commands a
user types (``crayon run`` and ``crayon study run --jobs 1``), on the default benchmark.

Run with ``make bench`` (or ``python benchmarks/study_cost.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crayon_plugins.progress import console

TARGET = 2.0
CONFIG = 'refiners = ["crayon-pruning"]\nmetrics = ["accuracy", "group-accuracy"]\n'
GRID = """title = "5 x 5 budget x noise grid of crayon-pruning"
[base]
{config}
[grid]
budget = [0.1, 0.25, 0.5, 0.75, 1.0]
flip_rate = [0.0, 0.05, 0.1, 0.2, 0.3]
"""


def timed(args: list[str], cache: Path) -> float:
    """Seconds ``crayon ARGS`` takes with an empty cache at ``cache``."""
    env = {**os.environ, "CRAYON_CACHE_DIR": str(cache), "CRAYON_PROGRESS": "0"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from crayon_plugins.cli import main; main()", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "run.toml").write_text(CONFIG)
        (root / "grid.toml").write_text(GRID.format(config=CONFIG.replace('refiners = ["crayon-pruning"]\n', "")).replace("[grid]", '[grid]\nrefiner = ["crayon-pruning"]'))
        one = timed(["run", "--config", str(root / "run.toml"), "--out", str(root / "run")], root / "cache-run")
        grid = timed(["study", "run", str(root / "grid.toml"), "--out", str(root / "grid"), "--jobs", "1"], root / "cache-grid")
    console.print(f"one crayon-pruning run (crayon run, empty cache)        {one:7.1f} s")
    console.print(f"5 × 5 budget × noise study (25 cells, empty cache)      {grid:7.1f} s")
    ratio = grid / one
    verdict = "[green]meets[/]" if ratio <= TARGET else "[red]misses[/]"
    console.print(f"study / one run = {ratio:.2f} ({verdict} the target ≤ {TARGET})")


if __name__ == "__main__":
    main()
