"""Stage 6, evaluate: every metric of a model, on the test split and, for metrics that need them,
on the dataset's extra evaluation splits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from crayon_plugins.annotation.records import MapsToJudge
from crayon_plugins.api.components import Need, Predictions
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import call_plugin
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures
from crayon_plugins.run.stages.explain import explain_all, shared_features
from crayon_plugins.run.stages.load import load

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline

Evaluated = tuple[ImageSet, SharedFeatures]
"""A split to evaluate on, with the original model's shared features of it."""


def evaluation_splits(pipeline: Pipeline, model: Classifier) -> dict[str, Evaluated]:
    """The dataset's extra evaluation splits that some metric reads, each with the original model's
    shared features of it."""
    names = dict.fromkeys(s for metric in pipeline.metrics for s in metric.evaluation_splits)
    return {name: (split := load(pipeline, name), shared_features(pipeline, model, split, name)) for name in names}


def evaluate(pipeline: Pipeline, model: Classifier, features: SharedFeatures, split: ImageSet, train_shares: Tensor, others: dict[str, Evaluated]) -> dict:
    """Every metric of ``model`` on ``split`` (``features``: its shared features) and, for metrics
    that need them, on ``others``; with a metric that needs ``"map-answers"``, the evaluation judge
    (not the annotator under study) judges the model's maps of ``split`` for its predictions."""
    predicted = features.logits(model).argmax(dim=1)
    answers = None
    if pipeline.metrics_need(Need.MAP_ANSWERS):
        maps = explain_all(pipeline.interpreter, model, split.images, predicted, pipeline.device, "explain on the test split")
        judge = pipeline.config.evaluation.judge
        judged = call_plugin(f"evaluation.judge {judge.name!r}", pipeline.judge.annotate_maps, MapsToJudge.of(split, maps))
        answers = judged.aligned(split.ids)
    extra = {name: Predictions(other, shared.logits(model).argmax(dim=1), train_shares) for name, (other, shared) in others.items()}
    found = Predictions(split, predicted, train_shares, answers, extra)
    metrics: dict = {}
    for metric in pipeline.metrics:
        metrics.update(metric.compute(found))
    return metrics
