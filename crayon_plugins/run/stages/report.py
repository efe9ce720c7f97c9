"""Stage 7, report: each method's row of the results, and the observers that print the run and
write ``results.json`` as it goes (the study runner and tests choose silent ones)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from crayon_plugins.annotation.paper_mix import relevant_rates_text
from crayon_plugins.api.components import Need, RefinementContext
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import TrainingError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.run.results import ResultRow, Results
from crayon_plugins.run.stages.evaluate import Evaluated, evaluate
from crayon_plugins.run.stages.original import OriginalModel
from crayon_plugins.run.table import annotation_kind
from crayon_plugins.training.loop import non_finite_weights
from crayon_plugins.training.selection import Curve
from crayon_plugins.utils.progress import console

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline


def new_results(pipeline: Pipeline) -> Results:
    """The run's results, before any method: what it ran on, and who judges test maps."""
    results = Results(dataset=pipeline.dataset.describe(), backbone=pipeline.backbone.describe(), seed=pipeline.config.seed)
    if pipeline.metrics_need(Need.MAP_ANSWERS):
        results.judge = pipeline.judge.describe()
    return results


def record_annotations(results: Results, context: RefinementContext, splits: dict[str, ImageSet]) -> None:
    """Record in ``results`` the answers the refiners get and the items left out of ``splits`` as unreadable."""
    results.skipped = {name: split.skipped for name, split in splits.items() if split.skipped}
    results.annotations = context.annotations.counts()
    results.annotation_stats = context.annotation_stats
    if context.neurons is not None:
        counts = context.neurons.annotations.counts()
        results.neuron_annotations = {"relevant": counts["yes"], "irrelevant": counts["no"], "maybe": counts["maybe"]}


def result_row(
    pipeline: Pipeline, method: str, model: Classifier, seconds: float, curve: Curve | None, needs: frozenset[str], test: Evaluated, others: dict[str, Evaluated], train_shares: Tensor
) -> ResultRow:
    """``method``'s row: its metrics on ``test`` (and ``others``), time, pruned neurons, annotation
    kind and validation curve; a model with non-finite weights is refused."""
    if bad := non_finite_weights(model):
        raise TrainingError(f"{method}: weight {bad!r} of the model is not finite; it is not reported")
    details = {"seconds": round(seconds, 1), "neurons_pruned": int((model.neuron_mask == 0).sum()), "annotation": annotation_kind(needs)}
    selection = curve.as_dict() if curve is not None else {"rule": pipeline.config.selection.rule, "epoch": None, "validation": []}
    metrics = evaluate(pipeline, model, test[1], test[0], train_shares, others)
    return ResultRow(method=method, metrics=metrics, details=details, selection=[{"seed": pipeline.config.seed, **selection}])


class RunObserver:
    """What a run tells as it goes; each hook does nothing unless overridden (Lightning's callbacks)."""

    def on_original(self, pipeline: Pipeline, original: OriginalModel) -> None:
        """The original model is ready."""

    def on_annotations(self, pipeline: Pipeline, results: Results, context: RefinementContext) -> None:
        """The answers are in ``context`` and recorded in ``results``."""

    def on_method_end(self, pipeline: Pipeline, results: Results, row: ResultRow) -> None:
        """``row`` (the original model's or a refiner's) has been added to ``results``."""


class ConsoleReport(RunObserver):
    """Prints where the original model came from, the answers, the panel's agreement and warnings."""

    def on_original(self, pipeline: Pipeline, original: OriginalModel) -> None:
        source = pipeline.config.original.checkpoint
        console.print(f"original model: {f'loaded from {source}' if source else 'loaded from cache' if original.loaded else 'trained'} (cache: {pipeline.cache.root})")

    def on_annotations(self, pipeline: Pipeline, results: Results, context: RefinementContext) -> None:
        for name, count in results.skipped.items():
            console.print(f"warning: {count} unreadable image(s) left out of the {name} split (skip_unreadable)", style="yellow", markup=False, highlight=False)
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

    def on_method_end(self, pipeline: Pipeline, results: Results, row: ResultRow) -> None:
        results.write(self.out)
