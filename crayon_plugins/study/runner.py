"""``crayon study run``: every cell of a study, on local processes or a Ray cluster, resumable.

An executor (:mod:`.executors`) runs the tasks, each with the study's number of torch threads, so a
cell's numbers do not depend on where it ran. The first wave computes each seed's shared artefacts
(the original model, its maps, pooled features and concepts) once, into the artefact cache; a
seed's cells start when its artefacts are ready and load them from the cache. Each finished cell is
written to ``DIR/cells/<key>.json`` (atomically) and ``DIR/results.csv`` is rebuilt from those
files, in grid order, after every cell. A run that is killed loses only the cells in flight, and
running it again computes only the cells without a record.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from crayon_plugins.annotation.records import Question
from crayon_plugins.api.components import DRAWINGS, Need
from crayon_plugins.config import RunConfig
from crayon_plugins.errors import ConfigError, CrayonError
from crayon_plugins.run.cache import ArtefactCache, default_cache_dir
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.run.stages.annotate import PREDICTED_MAPS
from crayon_plugins.run.stages.report import ModelFiles
from crayon_plugins.study.executors import Executor, create_executor
from crayon_plugins.study.spec import Cell, StudySpec, base_error, load_spec
from crayon_plugins.utils.files import writable_folder, write_atomically
from crayon_plugins.utils.progress import console, progress_bar, warn


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``("wga", 0.9)``, ``("groups:horizontal/red", 0.8)``, …: numbers only, nested names joined."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            yield from flat_metrics(value, f"{prefix}{name}:")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)


def prepare_seed(config: RunConfig, refiners: list[str], cache_root: str) -> None:
    """Compute and cache the shared artefacts of ``config``'s seed for ``refiners`` (the first wave)."""
    Pipeline.from_config(config, refiners, ArtefactCache(cache_root)).prepare_shared()


def run_cell(cell: Cell, cache_root: str, models: tuple[str, str] | None = None) -> dict:
    """Run one cell; returns its record. With ``models`` = ``(root, suffix)`` its model is saved as
    ``root/<method><suffix>`` (on the node that runs the cell)."""
    start = time.perf_counter()
    pipeline = Pipeline.from_config(cell.config, None, ArtefactCache(cache_root))
    observers = [ModelFiles(*models)] if models is not None else []  # a cell prints nothing
    results = pipeline.run(include_original=cell.refiner == "original", observers=observers)
    row = results.rows[0]
    metrics = dict(flat_metrics(row.metrics))
    refiner = pipeline.refiners.get(cell.refiner)
    if refiner is not None:
        used = {Question.MAPS: bool(refiner.needs & (DRAWINGS | {Need.MAP_ANSWERS})), PREDICTED_MAPS: Need.PREDICTED_MAP_ANSWERS in refiner.needs, Question.NEURONS: Need.NEURON_ANSWERS in refiner.needs}
        for question, stats in results.annotation_stats.items():
            if used.get(question):
                metrics.update(flat_metrics(stats, f"{question}."))
        metrics["neurons_pruned"] = float(row.details["neurons_pruned"])
    chosen = row.selection[0] if row.selection else {}
    if chosen.get("epoch"):  # the validation metrics of the kept epoch, for choosing options
        metrics["selection.epoch"] = float(chosen["epoch"])
        metrics.update(flat_metrics(chosen["validation"][chosen["epoch"] - 1], "val."))
        metrics["selection.tied"] = float(len(chosen["tie"]["epochs"])) if chosen.get("tie") else 0.0
    return {
        "key": cell.key,
        "refiner": cell.refiner,
        "seed": cell.seed,
        "axes": cell.axes,
        "metrics": metrics,
        "row": row.model_dump(mode="json"),
        "dataset": results.dataset,
        "backbone": results.backbone,
        "classes": results.classes,
        "image_size": results.image_size,
        "run": results.run,
        "judge": results.judge,
        "device": pipeline.device.type,
        "threads": cell.threads,
        "seconds": round(time.perf_counter() - start, 2),
        "pid": os.getpid(),
    }


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
    warn(f"ignoring the damaged cell record {path} ({problem}); the cell runs again")
    return None


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


def _finished_records(cells_dir: Path, device: str) -> dict[str, dict]:
    """The records in ``cells_dir`` by key, leaving out (with a warning) damaged ones and those
    computed on another device, which run again."""
    records = {}
    for path in sorted(cells_dir.glob("*.json")):
        if (record := read_record(path)) is None:
            continue
        if record.get("device", device) != device:
            warn(f"cell {path.stem} was computed on {record['device']} and this run is on {device}; it runs again")
            continue
        records[path.stem] = record
    return records


def run_cells(
    cells: list[Cell],
    cells_dir: Path,
    executor: Executor,
    cache_root: str | Path | None = None,
    finished: Callable[[dict[str, dict]], None] = lambda records: None,
    models: Callable[[Cell], tuple[str, str]] | None = None,
) -> tuple[dict[str, dict], list[str]]:
    """Run, on ``executor``, every cell without a record in ``cells_dir``: first each seed's shared
    artefacts, then that seed's cells. Returns every record by key and a line per failed cell;
    ``finished(records)`` is called with every record so far as each cell ends. With ``models``,
    each cell's model is saved where ``models(cell)`` says (see :func:`run_cell`)."""
    root = Path(cache_root if cache_root is not None else default_cache_dir()).absolute()
    with executor:
        device = executor.device(cells[0].config.device)
        cells = [cell.on(device) for cell in cells]
        where = executor.start(root, device)
        cells_dir.mkdir(parents=True, exist_ok=True)
        records = _finished_records(cells_dir, device)
        pending = [cell for cell in {c.key: c for c in cells}.values() if cell.key not in records]
        total = len({cell.key for cell in cells})
        console.print(f"{total} cells, {total - len(pending)} already done, {len(pending)} to run on {where}", highlight=False, soft_wrap=True)
        by_seed: dict[int, list[Cell]] = {}
        for cell in pending:
            by_seed.setdefault(cell.seed, []).append(cell)
        refiners = sorted({cell.refiner for cell in cells} - {"original"})
        failures: list[str] = []
        with progress_bar("cells", total) as advance:
            advance(total - len(pending))
            running: dict[Any, tuple[int, Cell | None]] = {}
            for seed, seed_cells in by_seed.items():
                running[executor.submit(prepare_seed, seed_cells[0].config, refiners, str(root))] = (seed, None)
            while running:
                for handle in executor.wait(running):
                    seed, cell = running.pop(handle)
                    try:
                        value, node = executor.result(handle)
                    except Exception as error:  # noqa: BLE001 - a failed task must not lose the others
                        if cell is None:
                            failures.append(f"seed {seed}, its original model and shared artefacts ({len(by_seed[seed])} cell(s) not run): {type(error).__name__}: {error}")
                            advance(len(by_seed[seed]))
                        else:
                            failures.append(f"{cell.refiner} seed {cell.seed} {cell.axes}: {type(error).__name__}: {error}")
                            advance()
                        continue
                    if cell is None:  # the seed's artefacts are in the cache: its cells can start
                        running.update({executor.submit(run_cell, c, str(root), models(c) if models else None): (seed, c) for c in by_seed[seed]})
                        continue
                    record = {**value, "node": node}
                    write_atomically(cells_dir / f"{cell.key}.json", json.dumps(record, indent=1) + "\n")
                    records[cell.key] = record
                    finished(records)
                    advance()
    return records, failures


def check_cells(cells: list[Cell], where: str, cache_root: str | Path | None = None) -> None:
    """Build every distinct cell's components before any work: a bad option fails at once."""
    for cell in {c.key: c for c in cells}.values():
        try:  # on the CPU: the executor checks the device, where the cells run
            Pipeline.from_config(cell.on("cpu").config, None, ArtefactCache(cache_root)).check_needs()
        except CrayonError as error:
            raise ConfigError(f"{where}: {error}") from None


def run_study(
    spec_path: str | Path, out: str | Path, jobs: int | None = None, cache_root: str | Path | None = None, executor: str = "local", address: str | None = None
) -> Path:
    """Run every cell of the study at ``spec_path`` not yet finished in ``out`` on ``executor``
    (``local``: ``jobs`` processes; ``ray``: the cluster at ``address``); returns
    ``out/results.csv``. Raises :class:`CrayonError` naming the cells that failed, after running the rest."""
    spec, out = load_spec(spec_path), Path(out)
    try:
        Pipeline.from_config(spec.base, spec.refiners(), ArtefactCache(cache_root))
    except CrayonError as error:
        raise base_error(Path(spec_path), error) from error
    cells = spec.cells()
    check_cells(cells, str(spec_path), cache_root)
    runner = create_executor(executor, spec.threads, jobs, address)
    writable_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, out / "spec.toml")
    csv_path = out / "results.csv"
    console.print(f"{spec.title}:")
    models = (lambda cell: (str((out / "models" / cell.key).absolute()), "")) if spec.save_models else None
    records, failures = run_cells(cells, out / "cells", runner, cache_root, lambda records: write_atomically(csv_path, results_csv(spec, records)), models)
    write_atomically(csv_path, results_csv(spec, records))
    if failures:
        raise CrayonError(f"{len(failures)} cell(s) failed (finished cells are kept in {csv_path}; run again to retry):\n" + "\n".join(failures))
    return csv_path
