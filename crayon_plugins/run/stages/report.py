"""Stage 7, report: what the run prints about its original model and annotations, and each
method's row of ``results.json``."""

from __future__ import annotations

from torch import Tensor

from crayon_plugins.annotation.paper_mix import relevant_rates_text
from crayon_plugins.api.components import Need, RefinementContext
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import TrainingError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures
from crayon_plugins.run.results import ResultRow, Results
from crayon_plugins.run.stages.annotate import describe
from crayon_plugins.run.stages.evaluate import Evaluate
from crayon_plugins.run.table import annotation_kind
from crayon_plugins.training.loop import non_finite_weights
from crayon_plugins.training.selection import Curve
from crayon_plugins.utils.progress import console


class Report(Evaluate):
    def new_results(self) -> Results:
        """The run's results, before any method: what it ran on, and who judges test maps."""
        results = Results(dataset=describe(self.config.dataset, self.dataset), backbone=describe(self.config.backbone, self.backbone), seed=self.config.seed)
        if self.metrics_need(Need.MAP_ANSWERS):
            results.judge = describe(self.config.evaluation.judge, self.judge)
        return results

    def report_original(self, cached: bool) -> None:
        source = self.config.original.checkpoint
        console.print(f"original model: {f'loaded from {source}' if source else 'loaded from cache' if cached else 'trained'} (cache: {self.cache.root})")

    def report_annotations(self, results: Results, context: RefinementContext, splits: dict[str, ImageSet]) -> None:
        """Record and print the answers the refiners get, the panel's agreement, and the items
        left out of ``splits`` as unreadable."""
        results.skipped = {name: split.skipped for name, split in splits.items() if split.skipped}
        for name, count in results.skipped.items():
            console.print(f"warning: {count} unreadable image(s) left out of the {name} split (skip_unreadable)", style="yellow", markup=False, highlight=False)
        results.annotations = context.annotations.counts()
        results.annotation_stats = context.annotation_stats
        console.print("annotations: " + ", ".join(f"{k} {v}" for k, v in results.annotations.items()))
        if context.neurons is not None:
            counts = context.neurons.annotations.counts()
            results.neuron_annotations = {"relevant": counts["yes"], "irrelevant": counts["no"], "maybe": counts["maybe"]}
            console.print(
                f"neurons ({self.config.neuron_annotator.name}): "
                + ", ".join(f"{k} {v}" for k, v in results.neuron_annotations.items())
                + f"; relevant {100 * counts['yes'] / len(context.neurons.concepts):.1f}%, real annotators: {relevant_rates_text()}"
            )
        panel = self.config.panel
        if panel.size > 1:
            for question, stats in context.annotation_stats.items():
                console.print(
                    f"panel of {panel.size} on {question} ({panel.aggregation}): Cohen's κ {stats['cohen_kappa']:.3f}, "
                    f"Fleiss' κ {stats['fleiss_kappa']:.3f}, Krippendorff's α {stats['krippendorff_alpha']:.3f}"
                    + (f", aggregated yes / no unlike the noise-free oracle {100 * stats['error_rate']:.1f}%" if "error_rate" in stats else "")
                )

    def result_row(
        self,
        method: str,
        model: Classifier,
        seconds: float,
        curve: Curve | None,
        needs: frozenset[str],
        test: tuple[ImageSet, SharedFeatures],
        others: dict[str, tuple[ImageSet, SharedFeatures]],
        train_shares: Tensor,
    ) -> ResultRow:
        """``method``'s row: its metrics on ``test`` (and ``others``), time, pruned neurons,
        annotation kind and validation curve; a model with non-finite weights is refused."""
        if bad := non_finite_weights(model):
            raise TrainingError(f"{method}: weight {bad!r} of the model is not finite; it is not reported")
        details = {"seconds": round(seconds, 1), "neurons_pruned": int((model.neuron_mask == 0).sum()), "annotation": annotation_kind(needs)}
        selection = curve.as_dict() if curve is not None else {"rule": self.config.selection.rule, "epoch": None, "validation": []}
        metrics = self.evaluate(model, test[1], test[0], train_shares, others)
        return ResultRow(method=method, metrics=metrics, details=details, selection=[{"seed": self.config.seed, **selection}])
