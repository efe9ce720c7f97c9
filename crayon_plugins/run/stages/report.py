"""Stage 7, report: each method's row of the results, and the observers that print the run and
write ``results.json`` as it goes (the study runner and tests choose silent ones)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from crayon_plugins.annotation.paper_mix import relevant_rates_text
from crayon_plugins.annotation.records import Answer
from crayon_plugins.api.components import DRAWINGS, Need, RefinementContext
from crayon_plugins.config import Rule
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import TrainingError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.saved import CARD, package_versions, save_model
from crayon_plugins.run.results import ResultRow, Results
from crayon_plugins.run.stages.evaluate import Evaluated, evaluate
from crayon_plugins.run.stages.original import OriginalModel
from crayon_plugins.run.table import annotation_kind
from crayon_plugins.training.loop import non_finite_weights
from crayon_plugins.training.selection import Curve
from crayon_plugins.utils.progress import console, warn

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline


def new_results(pipeline: Pipeline, train: ImageSet) -> Results:
    """The run's results, before any method: what it ran on, with every resolved option, and who
    judges test maps."""
    results = Results(
        dataset=pipeline.dataset.describe(), backbone=pipeline.backbone.describe(), seed=pipeline.config.seed, classes=list(train.class_names), image_size=list(train.image_size), run=run_record(pipeline)
    )
    if pipeline.metrics_need(Need.MAP_ANSWERS):
        results.judge = pipeline.judge.describe()
    return results


def run_record(pipeline: Pipeline) -> dict:
    """What a run's numbers depend on beyond its data: every component with its resolved options (the
    defaults filled in), the configuration as validated, the package versions, device and threads."""

    def resolved(component) -> dict:
        return {"name": component.name, "options": component.params.model_dump(mode="json")}

    p = pipeline
    single = {"dataset": p.dataset, "backbone": p.backbone, "interpreter": p.interpreter, "annotator": p.annotator, "concepts": p.concept_extractor, "neuron_annotator": p.neuron_annotator, "evaluation.judge": p.judge}
    return {
        "components": {
            **{where: resolved(component) for where, component in single.items()},
            "refiners": {name: resolved(refiner) for name, refiner in p.refiners.items()},
            "metrics": {metric.name: resolved(metric) for metric in p.metrics},
        },
        "configuration": p.config.model_dump(mode="json"),
        "versions": package_versions(),
        "device": str(p.device),
        "threads": torch.get_num_threads(),
    }


def record_annotations(results: Results, context: RefinementContext, splits: dict[str, ImageSet]) -> None:
    """Record in ``results`` the answers the refiners get and the items left out of ``splits`` as unreadable."""
    results.skipped = {name: split.skipped for name, split in splits.items() if split.skipped}
    results.annotations = context.annotations.counts()
    results.annotation_stats = context.annotation_stats
    if context.predicted_map_answers is not None:
        results.predicted_map_annotations = {a.name.lower(): int((context.predicted_map_answers == a).sum()) for a in (Answer.YES, Answer.NO, Answer.MAYBE)}
    if context.neurons is not None:
        counts = context.neurons.annotations.counts()
        results.neuron_annotations = {"relevant": counts["yes"], "irrelevant": counts["no"], "maybe": counts["maybe"]}


def result_row(
    pipeline: Pipeline,
    method: str,
    model: Classifier,
    seconds: float,
    curve: Curve | None,
    needs: frozenset[str],
    test: Evaluated,
    others: dict[str, Evaluated],
    train_shares: Tensor,
    reported: dict | None = None,
) -> ResultRow:
    """``method``'s row: its metrics on ``test`` (and ``others``), time, pruned neurons, annotation
    kind, validation curve and what the refiner ``reported`` (``details.refiner``); a model with
    non-finite weights is refused."""
    if bad := non_finite_weights(model):
        raise TrainingError(f"{method}: weight {bad!r} of the model is not finite; it is not reported")
    details = {"seconds": round(seconds, 1), "neurons_pruned": int((model.neuron_mask == 0).sum()), "annotation": annotation_kind(needs)}
    if reported:
        details["refiner"] = reported
    if method in (controls := pipeline.controls()):
        details["control"] = controls[method]
    selection = curve.as_dict() if curve is not None else {"rule": pipeline.config.selection.rule, "epoch": None, "validation": []}
    metrics = evaluate(pipeline, model, test[1], test[0], train_shares, others)
    if also := pipeline.config.selection.also:
        selection["rules"] = other_rules(also, curve, metrics)
    return ResultRow(method=method, metrics=metrics, details=details, selection=[{"seed": pipeline.config.seed, **selection}])


def other_rules(rules: list[Rule], curve: Curve | None, metrics: dict) -> dict[str, dict]:
    """Each of ``rules`` → the epoch it keeps from ``curve`` and that epoch's test metrics, looked up
    in the curve's per-epoch test metrics. A model not trained by epochs has one row for every rule
    (``epoch`` ``None``). The lookup is refused (``metrics`` ``None``, with ``why``) when the run's own
    rule's lookup does not give the ``metrics`` measured on the returned model: the refiner changed the
    model after the training the curve followed, so another epoch's numbers would not describe it."""
    if curve is None or not curve.epochs:
        return {rule: {"epoch": None, "metrics": metrics} for rule in rules}
    if not curve.test or not same_numbers(curve.test[curve.chosen - 1], metrics):
        why = "the returned model is not the one its validation curve followed; other rules' epochs cannot be looked up"
        return {rule: {"epoch": None, "metrics": None, "why": why} for rule in rules}
    return {rule: curve.under(rule) for rule in rules}


def same_numbers(a: Any, b: Any, tolerance: float = 1e-9) -> bool:
    """Whether nested metrics ``a`` and ``b`` hold the same keys and numbers (NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k], tolerance) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance
    return a == b


def refused_row(method: str, needs: frozenset[str], error: Exception) -> ResultRow:
    """The row of a refiner that was refused or failed: no numbers, and why."""
    return ResultRow(method=method, metrics={}, details={"refused": str(error), "annotation": annotation_kind(needs)})


class RunObserver:
    """What a run tells as it goes; each hook does nothing unless overridden (Lightning's callbacks)."""

    def on_original(self, pipeline: Pipeline, original: OriginalModel) -> None:
        """The original model is ready."""

    def on_annotations(self, pipeline: Pipeline, results: Results, context: RefinementContext) -> None:
        """The answers are in ``context`` and recorded in ``results``."""

    def on_method_end(self, pipeline: Pipeline, results: Results, row: ResultRow, model: Classifier | None) -> None:
        """``row`` (the original model's or a refiner's) has been added to ``results``; ``model``
        is the method's model (``None`` for a refiner that was refused: its row says why)."""


class ConsoleReport(RunObserver):
    """Prints where the original model came from, the answers, the panel's agreement and warnings."""

    def on_original(self, pipeline: Pipeline, original: OriginalModel) -> None:
        source = pipeline.config.original.checkpoint
        console.print(f"original model: {f'loaded from {source}' if source else 'loaded from cache' if original.loaded else 'trained'} (cache: {pipeline.cache.root})")

    def on_annotations(self, pipeline: Pipeline, results: Results, context: RefinementContext) -> None:
        for name, count in results.skipped.items():
            warn(f"{count} unreadable image(s) left out of the {name} split (skip_unreadable)")
        console.print("annotations: " + ", ".join(f"{k} {v}" for k, v in results.annotations.items()))
        if context.neurons is not None:
            share = 100 * results.neuron_annotations["relevant"] / len(context.neurons.concepts)
            console.print(
                f"neurons ({pipeline.config.neuron_annotator.name}): "
                + ", ".join(f"{k} {v}" for k, v in results.neuron_annotations.items())
                + f"; relevant {share:.1f}%, real annotators: {relevant_rates_text()}"
            )
        panel = pipeline.config.panel
        if panel.size > 1:
            for question, stats in context.annotation_stats.items():
                console.print(
                    f"panel of {panel.size} on {question} ({panel.aggregation}): Cohen's κ {stats['cohen_kappa']:.3f}, "
                    f"Fleiss' κ {stats['fleiss_kappa']:.3f}, Krippendorff's α {stats['krippendorff_alpha']:.3f}"
                    + (f", aggregated yes / no unlike the noise-free oracle {100 * stats['error_rate']:.1f}%" if "error_rate" in stats else "")
                )


class ResultsFile(RunObserver):
    """Rewrites ``out/results.json`` (and its figures) after every method, so a run stopped part-way
    keeps what it finished."""

    def __init__(self, out: str | Path) -> None:
        self.out = out

    def on_method_end(self, pipeline: Pipeline, results: Results, row: ResultRow, model: Classifier | None) -> None:
        results.write(self.out)


class ModelFiles(RunObserver):
    """Saves every method's model as ``root/<method><suffix>/`` (weights and card, see
    :mod:`crayon_plugins.model.saved`), as soon as its row is in; a refused method's folder from an
    earlier run into the same place is removed, so no model outlives its row."""

    def __init__(self, root: str | Path, suffix: str = "") -> None:
        self.root, self.suffix = Path(root), suffix

    def on_method_end(self, pipeline: Pipeline, results: Results, row: ResultRow, model: Classifier | None) -> None:
        folder = self.root / f"{row.method}{self.suffix}"
        if model is not None:
            save_model(model, folder, model_card(pipeline, results, row, model))
        elif (folder / CARD).exists():
            shutil.rmtree(folder)


class TensorBoardLog(RunObserver):
    """Writes each trainer's per-epoch log as TensorBoard events (:func:`write_tensorboard`) as each
    method ends."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def on_method_end(self, pipeline: Pipeline, results: Results, row: ResultRow, model: Classifier | None) -> None:
        write_tensorboard(results, self.root, row.method)


def write_tensorboard(results: Results, root: Path, method: str | None = None) -> None:
    """Each trainer's loss terms (``train/<term>``) and validation metrics (``val/<metric>``) per
    epoch as TensorBoard event files under ``root/<method>[-seed<k>]`` (one method, or all)."""
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    several = len(results.seeds) > 1
    runs: dict[str, list] = {}
    for name, seed, epoch, split, metric, value in results.epoch_log():
        if method is None or name == method:
            runs.setdefault(f"{name}-seed{seed}" if several else name, []).append((f"{split}/{metric}", value, epoch))
    for run, scalars in runs.items():
        writer = SummaryWriter(str(root / run))
        for tag, value, epoch in scalars:
            writer.add_scalar(tag, value, epoch)
        writer.close()


def model_card(pipeline: Pipeline, results: Results, row: ResultRow, model: Classifier) -> dict:
    """The card of ``row``'s model (:class:`~crayon_plugins.model.saved.ModelCard`, less what
    :func:`~crayon_plugins.model.saved.save_model` fills in)."""
    refiner = pipeline.refiners.get(row.method) if row.method != "original" else None
    needs = refiner.needs if refiner is not None else frozenset()
    annotations = {}
    if needs & (DRAWINGS | {Need.MAP_ANSWERS}):
        annotations["maps"] = results.annotations
    if Need.PREDICTED_MAP_ANSWERS in needs:
        annotations["predicted-maps"] = results.predicted_map_annotations
    if Need.NEURON_ANSWERS in needs:
        annotations["neurons"] = results.neuron_annotations
    chosen = row.selection[0] if row.selection else {}
    return {
        "method": row.method,
        "seed": pipeline.config.seed,
        "backbone": results.run["components"]["backbone"],
        "build": pipeline.backbone.recipe(len(results.classes)),
        "classes": results.classes,
        "input": {"size": results.image_size, "resize": getattr(pipeline.dataset, "resize", None), "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
        "refiner": results.run["components"]["refiners"][row.method] if refiner is not None else None,
        "selection": {"rule": chosen.get("rule"), "epoch": chosen.get("epoch")},
        "metrics": row.metrics,
        "annotations": annotations,
    }
