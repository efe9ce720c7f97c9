"""Stage 3, explain: the original model's saliency maps of the training split, its pooled features
of each split and its neurons' concepts, each computed once and cached."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from crayon_plugins.api import components
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import Items
from crayon_plugins.errors import PluginError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.concepts import NeuronConcepts
from crayon_plugins.model.features import SharedFeatures, backbone_digest, pooled_features, pools_channelwise
from crayon_plugins.run.cache import Check, cache_key
from crayon_plugins.run.stages.original import Original
from crayon_plugins.utils.progress import progress_bar


def explain_all(
    interpreter: components.Interpreter,
    model: Classifier,
    images: Items,
    targets: Tensor,
    device: torch.device,
    description: str,
    batch_size: int = 128,
) -> Tensor:
    """Maps of ``model`` (eval mode) for every image, on CPU, with a progress bar."""
    model.eval()
    chunks = []
    with progress_bar(description, -(-len(images) // batch_size)) as advance:
        for indices, batch in images.batches(batch_size=batch_size):
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


class Explain(Original):
    def maps_key(self) -> str:
        """Cache key of the original model's maps of the training split."""
        return cache_key(artefact="maps", model=self.model_key, interpreter=self._key(self.interpreter, self.config.interpreter), split="train")

    def concepts_key(self) -> str:
        """Cache key of the original model's neuron concepts."""
        return cache_key(artefact="concepts", model=self.model_key, extractor=self._key(self.concept_extractor, self.config.concepts))

    def original_maps(self, model: Classifier, train: ImageSet) -> tuple[Tensor, bool]:
        """The original model's maps of the training set for its true labels (cached)."""
        compute = lambda: explain_all(self.interpreter, model, train.images, train.labels, self.device, "explain original")  # noqa: E731
        return self.cache.get_or_compute("maps", self.maps_key(), compute, fits_tensor(len(train), 3))

    def shared_features(self, model: Classifier, split: ImageSet, name: str) -> SharedFeatures:
        """The original model's pooled features of ``split`` (cached), for models that share its
        backbone (none where its pooling is not channel-wise)."""
        if not pools_channelwise(model):
            return SharedFeatures(split.images, None, backbone_digest(model), self.device)
        key = cache_key(artefact="pooled-features", model=self.model_key, split=name)
        pooled, _ = self.cache.get_or_compute("features", key, lambda: pooled_features(model, split.images, self.device), fits_tensor(len(split), 2))
        return SharedFeatures(split.images, pooled, backbone_digest(model), self.device)

    def concepts(self, model: Classifier, train: ImageSet) -> tuple[NeuronConcepts, bool]:
        """The original model's neuron concepts on the training split (cached)."""

        def extract() -> dict:
            found = self._call_plugin("concepts", self.config.concepts, self.concept_extractor.extract, model, train)
            if not isinstance(found, NeuronConcepts):
                raise PluginError(f"concepts {self.config.concepts.name!r} returned {type(found).__name__}, not NeuronConcepts")
            return dict(vars(found))

        check = fits_fields({f.name for f in fields(NeuronConcepts)}, ("neuron_ids", "top_images", "top_activations", "cells", "boxes"))
        state, cached = self.cache.get_or_compute("concepts", self.concepts_key(), extract, check)
        return NeuronConcepts(**state), cached
