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
from crayon_plugins.run.stages.explain import cached_test_maps, explain_all, shared_features
from crayon_plugins.run.stages.load import load

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline

Evaluated = tuple[ImageSet, SharedFeatures]
"""A split to evaluate on, with the original model's shared features of it."""


def evaluated_splits(pipeline: Pipeline) -> list[str]:
    """The dataset's extra evaluation splits that some metric reads."""
    return list(dict.fromkeys(s for metric in pipeline.metrics for s in metric.evaluation_splits))


def evaluation_splits(pipeline: Pipeline, model: Classifier) -> dict[str, Evaluated]:
    """The dataset's extra evaluation splits that some metric reads, each with the original model's
    shared features of it."""
    return {name: (split := load(pipeline, name), shared_features(pipeline, model, split, name)) for name in evaluated_splits(pipeline)}


def evaluate(pipeline: Pipeline, model: Classifier, features: SharedFeatures, split: ImageSet, train_shares: Tensor, others: dict[str, Evaluated]) -> dict:
    """Every metric of ``model`` on ``split`` (``features``: its shared features) and, for metrics
    that need them, on ``others``. With a metric that needs ``"map-answers"`` or ``"maps"``, the
    model's maps of ``split`` for its predictions are computed once: the evaluation judge (not the
    annotator under study) judges them for ``"map-answers"``; ``"maps"`` gets them with the
    original model's (:func:`~crayon_plugins.run.stages.explain.original_test_maps`, cached by the
    run). Before the run has cached those, the model evaluated is the original in its own training
    (its epochs' test metrics, ``[selection] also``), and its own maps stand in."""
    predicted = features.logits(model).argmax(dim=1)
    maps = answers = original = None
    if pipeline.metrics_need(Need.MAP_ANSWERS, Need.MAPS):
        maps = explain_all(pipeline.interpreter, model, split.images, predicted, pipeline.device, "explain on the test split")
    if pipeline.metrics_need(Need.MAP_ANSWERS):
        judge = pipeline.config.evaluation.judge
        judged = call_plugin(f"evaluation.judge {judge.name!r}", pipeline.judge.annotate_maps, MapsToJudge.of(split, maps))
        answers = judged.aligned(split.ids)
    if pipeline.metrics_need(Need.MAPS):
        original = cached_test_maps(pipeline, split)
        original = maps if original is None else original
    extra = {name: Predictions(other, shared.logits(model).argmax(dim=1), train_shares) for name, (other, shared) in others.items()}
    found = Predictions(split, predicted, train_shares, answers, extra, maps, original)
    metrics: dict = {}
    for metric in pipeline.metrics:
        metrics.update(metric.compute(found))
    return metrics
