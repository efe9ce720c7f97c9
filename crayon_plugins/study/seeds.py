"""One run over several seeds: each (method, seed) is a cell of the study runner, in parallel worker
processes and resumable, and the table shows mean ± standard deviation over the seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

from crayon_plugins.config import RunConfig
from crayon_plugins.errors import CrayonError
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.run.results import ResultRow, Results, seeds_mean_and_std
from crayon_plugins.run.stages.report import run_record, write_tensorboard
from crayon_plugins.study.executors import LocalProcesses
from crayon_plugins.study.runner import check_cells, run_cells
from crayon_plugins.study.spec import Grid, StudySpec
from crayon_plugins.utils.progress import console


def run_seeds(config: RunConfig, refiners: list[str], seeds: list[int], out: Path, jobs: int = 1) -> Results:
    """Run the original model and ``refiners`` for every seed (a seed also draws generated data and
    the oracles' noise, unless the configuration pins their ``seed``); write ``out/results.json`` with mean ± std over
    seeds and each seed's metrics and selection, keeping each cell's record in ``out/cells`` and
    each model in ``out/models/<method>-seed<k>``."""
    spec = StudySpec(title="seeds", base=config.model_copy(update={"refiners": refiners}), grid=Grid(refiner=refiners or None, seed=seeds))
    cells = spec.cells()
    check_cells(cells, "--seeds")
    models = str((out / "models").absolute())
    records, failures = run_cells(cells, out / "cells", LocalProcesses(spec.threads, jobs), models=lambda cell: (models, f"-seed{cell.seed}"))
    by_cell = {(cell.refiner, cell.seed): records.get(cell.key) for cell in cells}
    found = next((r for r in by_cell.values() if r), None) or {}
    pipeline = Pipeline.from_config(spec.base)  # the run as a whole: every refiner, its control and options
    results = Results(
        dataset=found.get("dataset", ""),
        backbone=found.get("backbone", ""),
        seed=seeds[0],
        seeds=seeds,
        judge=found.get("judge"),
        classes=found.get("classes", []),
        image_size=found.get("image_size", []),
        run={**run_record(pipeline), "seeds": seeds},
    )
    controls = pipeline.controls()
    for method in ["original", *refiners]:
        rows = [(seed, by_cell[method, seed]) for seed in seeds if by_cell.get((method, seed))]
        if len(rows) < len(seeds):
            continue  # a failed cell: reported below, never averaged over fewer seeds silently
        per_seed = [record["row"] for _, record in rows]
        mean, std = seeds_mean_and_std([row["metrics"] for row in per_seed])
        details = {
            "annotation": per_seed[0]["details"]["annotation"],
            "seconds": round(statistics.fmean(row["details"]["seconds"] for row in per_seed), 1),
            "neurons_pruned": per_seed[0]["details"]["neurons_pruned"] if len({row["details"]["neurons_pruned"] for row in per_seed}) == 1 else [row["details"]["neurons_pruned"] for row in per_seed],
        }
        if method in controls:
            details["control"] = controls[method]
        selection = [entry for row in per_seed for entry in row["selection"]]
        seeds_metrics = [{"seed": seed, "metrics": record["row"]["metrics"]} for seed, record in rows]
        results.rows.append(ResultRow(method=method, metrics=mean, std=std, details=details, selection=selection, seeds=seeds_metrics))
    results.write(out)
    if config.logging.tensorboard:
        write_tensorboard(results, out / "tensorboard")
    if failures:
        raise CrayonError(f"{len(failures)} cell(s) failed; the methods with every seed are in {out / 'results.json'} (run again to retry the rest):\n" + "\n".join(failures))
    console.print(f"{len(seeds)} seeds: {', '.join(map(str, seeds))}")
    return results
