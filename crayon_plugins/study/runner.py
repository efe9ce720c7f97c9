"""``crayon study run``: every cell of a study, in parallel processes, resumable.

Cells run in worker processes (spawned; ``--jobs`` of them, each with ``cores // jobs`` threads, so
a study's numbers repeat for the same ``--jobs``). Each finished cell is written to
``DIR/cells/<key>.json`` (atomically, by the process that ran it); ``DIR/results.csv`` is rebuilt from those files, in grid order, after every cell. A run that is killed
loses only the cells in flight, and running it again computes only the cells without a file. Cells
share the original models, maps, concepts, pooled features and panel answers through the artefact
cache, whose file locks make a process wait for an artefact another one is computing.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ..cache import ArtifactCache
from ..components import DRAWINGS, Need
from ..errors import ConfigError, CrayonError
from ..files import writable_folder, write_atomically
from ..pipeline import Pipeline
from ..progress import console, progress_bar, set_enabled
from .spec import Cell, StudySpec, base_error, load_spec


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``("wga", 0.9)``, ``("groups:horizontal/red", 0.8)``, …: numbers only, nested names joined."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            yield from flat_metrics(value, f"{prefix}{name}:")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)


def run_cell(cell: Cell, cache_root: str | None, cells_dir: str) -> dict:
    """Run one cell, write its record to ``cells_dir/<key>.json`` and return it."""
    start = time.perf_counter()
    pipeline = Pipeline.from_config(cell.config, None, ArtifactCache(cache_root))
    results = pipeline.run(include_original=cell.refiner == "original")
    row = results.rows[0]
    metrics = dict(flat_metrics(row.metrics))
    refiner = pipeline.refiners.get(cell.refiner)
    if refiner is not None:
        used = {"maps": bool(refiner.needs & (DRAWINGS | {Need.MAP_ANSWERS})), "neurons": Need.NEURON_ANSWERS in refiner.needs}
        for question, stats in results.annotation_stats.items():
            if used.get(question):
                metrics.update(flat_metrics(stats, f"{question}."))
        metrics["neurons_pruned"] = float(row.details["neurons_pruned"])
    chosen = row.selection[0] if row.selection else {}
    if chosen.get("epoch"):  # the validation metrics of the kept epoch, for choosing options
        metrics["selection.epoch"] = float(chosen["epoch"])
        metrics.update(flat_metrics(chosen["validation"][chosen["epoch"] - 1], "val."))
    record = {
        "key": cell.key,
        "refiner": cell.refiner,
        "seed": cell.seed,
        "axes": cell.axes,
        "metrics": metrics,
        "row": row.model_dump(mode="json"),
        "dataset": results.dataset,
        "backbone": results.backbone,
        "judge": results.judge,
        "seconds": round(time.perf_counter() - start, 2),
        "pid": os.getpid(),
    }
    write_atomically(Path(cells_dir) / f"{cell.key}.json", json.dumps(record, indent=1) + "\n")
    return record


def _die_with(parent: int) -> None:
    """End this worker as soon as ``parent`` (the study's process) is gone, even if it was killed
    with SIGKILL and could not stop its workers: on Linux the kernel sends SIGKILL (``prctl``), and
    everywhere a watcher thread checks the parent every half second."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watcher below still ends the worker

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


RECORD_FIELDS = {"key": str, "refiner": str, "seed": int, "axes": dict, "metrics": dict, "row": dict}


def read_record(path: Path) -> dict | None:
    """The cell record at ``path``, or ``None`` (with a warning; the cell is run again) if it is
    damaged: not JSON, not UTF-8, a field missing or of the wrong type, a metric not a number."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        problem = next((f"field {name!r} missing or not {kind.__name__}" for name, kind in RECORD_FIELDS.items() if not isinstance(record.get(name), kind)), None) if isinstance(record, dict) else "not a JSON object"
        if problem is None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record["metrics"].values()):
            problem = "a metric is not a number"
        if problem is None and record["key"] != path.stem:
            problem = f"it is the record of cell {record['key']}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = f"{type(error).__name__}: {error}"
    if problem is None:
        return record
    console.print(f"warning: ignoring the damaged cell record {path} ({problem}); the cell runs again", style="yellow", markup=False, highlight=False, soft_wrap=True)
    return None


def _init_worker(threads: int, parent: int) -> None:
    _die_with(parent)
    torch.set_num_threads(threads)
    set_enabled(False)
    console.quiet = True


def results_csv(spec: StudySpec, records: dict[str, dict]) -> str:
    """The tidy table: one row per finished cell and metric, cells in grid order, metrics sorted."""
    axes = spec.grid.varied()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["refiner", "seed", *axes, "metric", "value"])
    for cell in spec.cells():
        record = records.get(cell.key)
        if record is None:
            continue
        for metric, value in sorted(record["metrics"].items()):
            writer.writerow([cell.refiner, cell.seed, *(cell.axes.get(a, "") for a in axes), metric, repr(value) if not math.isnan(value) else "nan"])
    return out.getvalue()


def _pending_order(cells: list[Cell]) -> list[Cell]:
    """Unique cells, originals first, then round-robin over seeds so parallel workers start on
    different original models instead of waiting on one another's."""
    unique = list({cell.key: cell for cell in cells}.values())
    by_seed: dict[int, list[Cell]] = {}
    for cell in unique:
        by_seed.setdefault(cell.seed, []).append(cell)
    queues = list(by_seed.values())
    order = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def run_cells(
    cells: list[Cell], cells_dir: Path, jobs: int, cache_root: str | Path | None, finished: Callable[[dict[str, dict]], None] = lambda records: None
) -> tuple[dict[str, dict], list[str]]:
    """Run every cell without a record in ``cells_dir`` in ``jobs`` worker processes; returns every
    record by key and a line per failed cell. ``finished(records)`` is called with every record so
    far as each cell ends."""
    if jobs < 1:
        raise ConfigError(f"--jobs: must be at least 1, got {jobs}")
    cells_dir.mkdir(parents=True, exist_ok=True)
    records = {}
    for path in cells_dir.glob("*.json"):
        if (record := read_record(path)) is not None:
            records[path.stem] = record
    pending = [cell for cell in _pending_order(cells) if cell.key not in records]
    total = len({cell.key for cell in cells})
    console.print(f"{total} cells, {total - len(pending)} already done, {len(pending)} to run with {jobs} process(es)")
    failures = []
    with progress_bar("cells", total) as advance:
        advance(total - len(pending))
        root = None if cache_root is None else str(cache_root)
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
            running = {pool.submit(run_cell, cell, root, str(cells_dir)): cell for cell in pending}
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = running.pop(future)
                    try:
                        record = future.result()
                        records[record["key"]] = record
                        finished(records)
                    except Exception as error:  # noqa: BLE001 - a failed cell must not lose the others
                        failures.append(f"{cell.refiner} seed {cell.seed} {cell.axes}: {type(error).__name__}: {error}")
                    advance()
    return records, failures


def check_cells(cells: list[Cell], where: str, cache_root: str | Path | None = None) -> None:
    """Build every distinct cell's components before any work: a bad option fails at once."""
    for cell in {c.key: c for c in cells}.values():
        try:
            Pipeline.from_config(cell.config, None, ArtifactCache(cache_root))
        except CrayonError as error:
            raise ConfigError(f"{where}: {error}") from None


def run_study(spec_path: str | Path, out: str | Path, jobs: int = 1, cache_root: str | Path | None = None) -> Path:
    """Run every cell of the study at ``spec_path`` not yet finished in ``out``; returns
    ``out/results.csv``. Raises :class:`CrayonError` naming the cells that failed, after running the rest."""
    spec, out = load_spec(spec_path), Path(out)
    try:
        Pipeline.from_config(spec.base, spec.refiners(), ArtifactCache(cache_root))
    except CrayonError as error:
        raise base_error(Path(spec_path), error) from error
    cells = spec.cells()
    check_cells(cells, str(spec_path), cache_root)
    writable_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, out / "spec.toml")
    csv_path = out / "results.csv"
    console.print(f"{spec.title}:")
    records, failures = run_cells(cells, out / "cells", jobs, cache_root, lambda records: write_atomically(csv_path, results_csv(spec, records)))
    write_atomically(csv_path, results_csv(spec, records))
    if failures:
        raise CrayonError(f"{len(failures)} cell(s) failed (finished cells are kept in {csv_path}; run again to retry):\n" + "\n".join(failures))
    return csv_path
