"""Stage 6, evaluate: every metric of a model, on the test split and, for metrics that need them,
on the dataset's extra evaluation splits."""

from __future__ import annotations

from torch import Tensor

from crayon_plugins.annotation.records import MapsToJudge
from crayon_plugins.api import components
from crayon_plugins.api.components import Need
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures
from crayon_plugins.run.stages.explain import explain_all
from crayon_plugins.run.stages.refine import Refine


class Evaluate(Refine):
    def evaluation_splits(self, model: Classifier) -> dict[str, tuple[ImageSet, SharedFeatures]]:
        """The dataset's extra evaluation splits that some metric reads, each with the original
        model's shared features of it."""
        names = dict.fromkeys(s for metric in self.metrics for s in metric.evaluation_splits)
        return {name: (split := self.load(name), self.shared_features(model, split, name)) for name in names}

    def evaluate(
        self, model: Classifier, features: SharedFeatures, split: ImageSet, train_shares: Tensor, others: dict[str, tuple[ImageSet, SharedFeatures]]
    ) -> dict:
        """Every metric of ``model`` on ``split`` (``features``: its shared features) and, for metrics
        that need them, on ``others``; with a metric that needs ``"map-answers"``, the evaluation
        judge (not the annotator under study) judges the model's maps of ``split`` for its
        predictions."""
        predicted = features.logits(model).argmax(dim=1)
        answers = None
        if self.metrics_need(Need.MAP_ANSWERS):
            maps = explain_all(self.interpreter, model, split.images, predicted, self.device, "explain on the test split")
            judged = self._call_plugin("evaluation.judge", self.config.evaluation.judge, self.judge.annotate_maps, MapsToJudge.of(split, maps))
            answers = judged.aligned(split.ids)
        extra = {name: components.Predictions(other, shared.logits(model).argmax(dim=1), train_shares) for name, (other, shared) in others.items()}
        found = components.Predictions(split, predicted, train_shares, answers, extra)
        metrics: dict = {}
        for metric in self.metrics:
            metrics.update(metric.compute(found))
        return metrics
