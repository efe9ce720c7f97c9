"""Stage 4, annotate: the panel's answers about the original model's maps and neurons, and its
drawings, for the items the budget chooses; with agreement and error statistics. Also the two
uses of the same artefacts outside a run: a task for people, and the noise-free oracle's answers."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crayon_plugins.annotation import panel
from crayon_plugins.annotation.budget import image_losses, neuron_taylor_scores, selected
from crayon_plugins.annotation.records import Annotations, Answer, AttentionMaps, MapsToJudge, NeuronsToJudge, Question, positions
from crayon_plugins.annotation.task import Task, write_task
from crayon_plugins.api.components import DRAWINGS, MAP_JUDGEMENTS, AnnotationSource, AnswerSet, DrawnRegions, Need, NeuronJudgements
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import call_plugin
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures
from crayon_plugins.run.cache import cache_key
from crayon_plugins.run.stages.explain import concepts, concepts_key, fits_fields, maps_key, original_maps, predicted_maps, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.training.energy import degenerate_yes

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline


def annotate(pipeline: Pipeline, model: Classifier, train: ImageSet, maps: Tensor, features: SharedFeatures) -> AnswerSet:
    """The answers every refiner of the run gets about the original ``model`` (its ``maps`` and
    pooled ``features`` of the training split). Nobody is asked about maps unless a refiner needs
    map answers or drawings (a dataset without object masks then needs no annotator that uses them)."""
    annotations, stats, chosen = Annotations((), torch.empty(0, dtype=torch.int64), ()), {}, None
    if pipeline.needs(*MAP_JUDGEMENTS, *DRAWINGS):
        chosen = chosen_images(pipeline, model, train, features)
    if pipeline.needs(Need.MAP_ANSWERS, *DRAWINGS):
        annotations, stats[Question.MAPS] = panel_answers(pipeline, Question.MAPS, MapsToJudge.of(train, maps, key=maps_key(pipeline)), chosen)
        stats[Question.MAPS]["yes_on_zero_maps"] = float(degenerate_yes(maps, annotations.aligned(train.ids)))
    predicted = None
    if pipeline.needs(Need.PREDICTED_MAP_ANSWERS):
        classes, found = predicted_maps(pipeline, model, train, features)
        predicted, stats[PREDICTED_MAPS] = panel_answers(pipeline, Question.MAPS, MapsToJudge.of(train, found, classes, maps_key(pipeline, "train-predicted")), chosen)
        stats[PREDICTED_MAPS]["predicted_wrong"] = float((classes != train.labels).sum())
    neurons = None
    if pipeline.needs(Need.NEURON_ANSWERS):
        neurons, stats[Question.NEURONS] = neuron_judgements(pipeline, model, train, features)
    drawn = drawings(pipeline, train, maps, chosen) if pipeline.needs(*DRAWINGS) else None
    return AnswerSet(annotations, neurons, drawn, stats, predicted)


PREDICTED_MAPS = "predicted-maps"
"""The key of the statistics of the answers about the maps for the original model's predicted
classes (beside ``"maps"`` and ``"neurons"``)."""


def panel_answers(pipeline: Pipeline, question: Question, items: MapsToJudge | NeuronsToJudge, chosen: Tensor) -> tuple[Annotations, dict[str, float]]:
    """Every panel member's answers to ``question`` (maps or neurons) about ``items``
    (cached, before the budget cut), cut to the ``chosen`` items, aggregated; and statistics:
    agreement, shares of the aggregated answers and, for oracles, their error against the
    noise-free oracle. The items' key names them in the cache."""
    where, spec, members = {
        Question.MAPS: ("annotator", pipeline.config.annotator, pipeline.map_panel),
        Question.NEURONS: ("neuron_annotator", pipeline.config.neuron_annotator, pipeline.neuron_panel),
    }[question]

    def answers(source: AnnotationSource) -> Annotations:
        ask = source.annotate_maps if question == Question.MAPS else source.annotate_neurons
        key = cache_key(artefact="answers", question=question, items=items.key, source=spec.name, params=source.params.model_dump(mode="json"), content=source.fingerprint())

        def compute() -> dict:
            found = call_plugin(f"{where} {spec.name!r}", ask, items)
            return {"item_ids": list(found.item_ids), "answers": found.answers, "annotators": list(found.annotators)}

        state, _ = pipeline.cache.get_or_compute("answers", key, compute, fits_fields({"item_ids", "answers", "annotators"}, ("item_ids", "answers", "annotators")))
        return Annotations(tuple(state["item_ids"]), state["answers"], tuple(state["annotators"]))

    ids = items.ids if question == Question.MAPS else items.concepts.neuron_ids
    keep = {ids[i] for i in chosen.tolist()}
    raw = [answers(source) for source in members]
    rows = [(item, answer, who) for found in raw for item, answer, who in zip(found.item_ids, found.answers.tolist(), found.annotators) if item in keep]
    cut = Annotations(tuple(r[0] for r in rows), torch.tensor([r[1] for r in rows], dtype=torch.int64), tuple(r[2] for r in rows))
    aggregated = panel.aggregate(cut, pipeline.config.panel.aggregation)
    stats = {"annotated": float(len(aggregated.item_ids)), **panel.agreement(cut)}
    stats.update({k: v / max(1, len(aggregated.item_ids)) for k, v in aggregated.counts().items()})
    truthful = members[0].noise_free()
    if truthful is not None:
        truth = answers(truthful).aligned(ids)[positions(aggregated.item_ids, ids)]
        decided = aggregated.answers != Answer.MAYBE
        wrong = (aggregated.answers != truth) & decided
        stats["error_rate"] = float(wrong.sum() / decided.sum()) if decided.any() else float("nan")
    return aggregated, stats


def chosen_images(pipeline: Pipeline, model: Classifier, train: ImageSet, features: SharedFeatures) -> Tensor:
    """Indices of the training images the budget has annotated."""
    return selected(len(train), pipeline.config.budget, pipeline.config.seed, lambda: image_losses(model, features, train.labels))


def neuron_judgements(pipeline: Pipeline, model: Classifier, train: ImageSet, features: SharedFeatures) -> tuple[NeuronJudgements, dict[str, float]]:
    """The concepts of the original model's neurons and the panel's answers about those the budget
    chooses, with their statistics."""
    found = concepts(pipeline, model, train)
    chosen = selected(len(found), pipeline.config.budget, pipeline.config.seed, lambda: neuron_taylor_scores(model, features, train.labels))
    annotations, stats = panel_answers(pipeline, Question.NEURONS, NeuronsToJudge(found, train, concepts_key(pipeline)), chosen)
    judged = NeuronJudgements(found, annotations.aligned(found.neuron_ids), annotations, pipeline.neuron_annotator.describe())
    return judged, stats


def drawings(pipeline: Pipeline, train: ImageSet, maps: Tensor, chosen: Tensor) -> DrawnRegions:
    """The panel's drawings of the ``chosen`` training images, combined per image by ``[panel]
    drawings`` over everyone who drew it (:func:`combine_drawings`)."""
    size = train.image_size
    votes = torch.zeros(len(train), *size, dtype=torch.int64)
    drawers = torch.zeros(len(train), dtype=torch.int64)
    for source in pipeline.map_panel:
        found: AttentionMaps = call_plugin(f"annotator {pipeline.config.annotator.name!r}", source.annotate_attention, MapsToJudge.of(train, maps, key=maps_key(pipeline)))
        counted, people = found.tally(train.ids, size)
        votes += counted
        drawers += people
    keep = torch.zeros(len(train), dtype=torch.bool)
    keep[chosen] = True
    regions = combine_drawings(votes, drawers, pipeline.config.panel.drawings) & keep.view(-1, 1, 1)
    return DrawnRegions(regions, regions.flatten(1).any(dim=1))


def combine_drawings(votes: Tensor, drawers: Tensor, rule: str) -> Tensor:
    """``(N, H, W)`` bool: the pixels kept of each image, from ``votes`` (how many drawers covered
    each pixel) and ``drawers`` (how many people drew the image): by ``majority`` at least half of
    them, by ``union`` one, by ``intersection`` all; nothing where nobody drew."""
    needed = {"majority": drawers / 2, "union": drawers.clamp(max=1), "intersection": drawers}[rule].view(-1, 1, 1)
    return (votes >= needed) & (drawers > 0).view(-1, 1, 1)


class MapsOf(StrEnum):
    """Which class's map of each image people judge: its label's, or the one the model predicts."""

    LABEL = "label"
    PREDICTED = "predicted"


def prepare_task(pipeline: Pipeline, question: Question, folder: Path, maps_of: MapsOf = MapsOf.LABEL) -> Task:
    """Train or load ``pipeline``'s original model (cached as usual), explain it and write the task
    of ``question`` for people to ``folder``: the items the configured ``[budget]`` takes, first
    those its ``selection`` ranks first; for maps, the maps of ``maps_of`` (each item names its class)."""
    config = pipeline.config
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    features = shared_features(pipeline, model, train, "train")
    if question == Question.NEURONS:
        found = concepts(pipeline, model, train)
        chosen = selected(len(found), config.budget, config.seed, lambda: neuron_taylor_scores(model, features, train.labels), ranked=True)
        return write_task(folder, question, concepts_key(pipeline), train, chosen.tolist(), found=found)
    chosen = selected(len(train), config.budget, config.seed, lambda: image_losses(model, features, train.labels), ranked=True)
    predicted = features.logits(model).argmax(dim=1)
    if maps_of == MapsOf.PREDICTED:
        classes, maps = predicted_maps(pipeline, model, train, features)
        return write_task(folder, question, maps_key(pipeline, "train-predicted"), train, chosen.tolist(), maps=maps, classes=classes, predicted=predicted)
    return write_task(folder, question, maps_key(pipeline), train, chosen.tolist(), maps=original_maps(pipeline, model, train), predicted=predicted)


def noise_free_answers(pipeline: Pipeline, question: Question, source: AnnotationSource) -> dict[str, int] | None:
    """The answers of ``source``'s noise-free twin to ``question`` about the original model's
    training split, item id → :class:`Answer` code; ``None`` where ``source`` has no such twin (it
    is not a simulated annotator)."""
    truthful = source.noise_free()
    if truthful is None:
        return None
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    if question == Question.NEURONS:
        found = truthful.annotate_neurons(NeuronsToJudge(concepts(pipeline, model, train), train))
    else:
        found = truthful.annotate_maps(MapsToJudge.of(train, original_maps(pipeline, model, train)))
    return dict(zip(found.item_ids, found.answers.tolist()))
