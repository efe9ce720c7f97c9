"""Stage 3, explain: the original model's saliency maps of the training split, its pooled features
of each split and its neurons' concepts, each computed once and cached."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from crayon_plugins.api import components
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import Items
from crayon_plugins.errors import CrayonError, PluginError, call_plugin
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.concepts import NeuronConcepts
from crayon_plugins.model.features import SharedFeatures, backbone_digest, pooled_features, pools_channelwise
from crayon_plugins.run.cache import Check, cache_key, component_key
from crayon_plugins.utils.progress import progress_bar

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline



def explain_all(
    interpreter: components.Interpreter,
    model: Classifier,
    images: Items,
    targets: Tensor,
    device: torch.device,
    description: str,
    batch_size: int = 128,
    only: Tensor | None = None,
) -> Tensor:
    """Maps of ``model`` (eval mode) for every image (or the images at indices ``only``, in that
    order), each for its class in ``targets`` (one per image of ``images``), on CPU, with a progress bar."""
    model.eval()
    chunks = []
    with progress_bar(description, -(-(len(images) if only is None else len(only)) // batch_size)) as advance:
        for indices, batch in images.batches(only, batch_size=batch_size):
            chunks.append(interpreter(model, batch.to(device, non_blocking=True), targets[indices].to(device)).cpu())
            advance()
    return torch.cat(chunks)


def fits_tensor(items: int, ndim: int) -> Check:
    """Check of a cached per-item tensor: floating point, ``ndim`` dimensions, ``items`` rows."""

    def check(value: Any) -> str | None:
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.ndim != ndim or len(value) != items:
            got = f"{value.dtype} of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            return f"expected a float tensor of {ndim} dimensions for {items} items, found {got}"
        return None

    return check


def fits_fields(names: set[str], sized: tuple[str, ...] = ()) -> Check:
    """Check of a cached record: a dict with exactly the keys ``names``, those in ``sized`` of one length."""

    def check(value: Any) -> str | None:
        if not isinstance(value, dict) or set(value) != names:
            return f"expected the fields {sorted(names)}"
        if len({len(value[f]) for f in sized}) > 1:
            return f"{', '.join(sized)} differ in length"
        return None

    return check


def maps_key(pipeline: Pipeline, split: str = "train") -> str:
    """Cache key of the original model's maps of ``split``: of the training split for the true
    labels (:func:`original_maps`) or, as ``"train-predicted"``, for its predictions
    (:func:`predicted_maps`); of the test split for its predictions (:func:`original_test_maps`)."""
    return cache_key(artefact="maps", model=pipeline.model_key, interpreter=component_key(pipeline.interpreter, pipeline.config.interpreter), split=split)


def concepts_key(pipeline: Pipeline) -> str:
    """Cache key of the original model's neuron concepts."""
    return cache_key(artefact="concepts", model=pipeline.model_key, extractor=component_key(pipeline.concept_extractor, pipeline.config.concepts))


def original_maps(pipeline: Pipeline, model: Classifier, train: ImageSet) -> Tensor:
    """The original model's maps of the training set for its true labels (cached)."""
    compute = lambda: explain_all(pipeline.interpreter, model, train.images, train.labels, pipeline.device, "explain original")  # noqa: E731
    maps, _ = pipeline.cache.get_or_compute("maps", maps_key(pipeline), compute, fits_tensor(len(train), 3))
    return maps


def predicted_maps(pipeline: Pipeline, model: Classifier, train: ImageSet, features: SharedFeatures) -> tuple[Tensor, Tensor]:
    """The original model's predicted classes of the training set (from its shared ``features``)
    and its maps for them (cached): :func:`original_maps` where the prediction is the label, the
    images it gets wrong explained for the class it predicts."""
    predicted = features.logits(model).argmax(dim=1)
    maps = original_maps(pipeline, model, train)

    def compute() -> Tensor:
        found, wrong = maps.clone(), (predicted != train.labels).nonzero().flatten()
        if len(wrong):
            found[wrong] = explain_all(pipeline.interpreter, model, train.images, predicted, pipeline.device, "explain original (predicted classes)", only=wrong)
        return found

    found, _ = pipeline.cache.get_or_compute("maps", maps_key(pipeline, "train-predicted"), compute, fits_tensor(len(train), 3))
    return predicted, found


def original_test_maps(pipeline: Pipeline, model: Classifier, test: ImageSet, features: SharedFeatures) -> Tensor:
    """The original ``model``'s maps of the test split for its predicted classes (``features``: its
    shared features of the split), computed once and cached, for metrics that need ``"maps"``: the
    evaluate stage reads them back for every model (:func:`cached_test_maps`), so an entry that
    could not be written is an error."""
    compute = lambda: explain_all(pipeline.interpreter, model, test.images, features.logits(model).argmax(dim=1), pipeline.device, "explain original on the test split")  # noqa: E731
    key = maps_key(pipeline, "test")
    maps, _ = pipeline.cache.get_or_compute("maps", key, compute, fits_tensor(len(test), 3))
    if not pipeline.cache.path("maps", key).is_file():
        raise CrayonError(f"the original model's test maps could not be written to the cache ({pipeline.cache.path('maps', key)}), and metrics that need maps read them from there")
    return maps


def cached_test_maps(pipeline: Pipeline, test: ImageSet) -> Tensor | None:
    """The original model's test maps as :func:`original_test_maps` cached them; ``None`` before it has."""
    return pipeline.cache.load("maps", maps_key(pipeline, "test"), fits_tensor(len(test), 3))


def shared_features(pipeline: Pipeline, model: Classifier, split: ImageSet, name: str) -> SharedFeatures:
    """The original model's pooled features of ``split`` (cached), for models that share its
    backbone (none where its pooling is not channel-wise)."""
    if not pools_channelwise(model):
        return SharedFeatures(split.images, None, backbone_digest(model), pipeline.device)
    key = cache_key(artefact="pooled-features", model=pipeline.model_key, split=name)
    pooled, _ = pipeline.cache.get_or_compute("features", key, lambda: pooled_features(model, split.images, pipeline.device), fits_tensor(len(split), 2))
    return SharedFeatures(split.images, pooled, backbone_digest(model), pipeline.device)


def concepts(pipeline: Pipeline, model: Classifier, train: ImageSet) -> NeuronConcepts:
    """The original model's neuron concepts on the training split (cached)."""
    spec = pipeline.config.concepts

    def extract() -> dict:
        found = call_plugin(f"concepts {spec.name!r}", pipeline.concept_extractor.extract, model, train)
        if not isinstance(found, NeuronConcepts):
            raise PluginError(f"concepts {spec.name!r} returned {type(found).__name__}, not NeuronConcepts")
        return dict(vars(found))

    check = fits_fields({f.name for f in fields(NeuronConcepts)}, ("neuron_ids", "top_images", "top_activations", "cells", "boxes"))
    state, _ = pipeline.cache.get_or_compute("concepts", concepts_key(pipeline), extract, check)
    return NeuronConcepts(**state)
