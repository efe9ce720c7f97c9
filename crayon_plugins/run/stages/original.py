"""Stage 2, the original model: trained by ERM (cached), or the user's checkpoint; and model
selection on validation, which every trainer of the run shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.model.checkpoints import file_digest, load_checkpoint
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures, predict
from crayon_plugins.run.cache import Check, cache_key, component_key
from crayon_plugins.run.stages.evaluate import evaluate, evaluated_splits, evaluation_splits
from crayon_plugins.run.stages.explain import shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.training.loop import fit, log_term, to_device
from crayon_plugins.training.selection import Curve, Selection, validation_metrics

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline


def fits_model(model: Classifier) -> Check:
    """Check of a cached original model: ``weights`` and ``curve``, the weights with ``model``'s keys,
    shapes and dtypes."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}

    def check(state: Any) -> str | None:
        if not isinstance(state, dict) or not isinstance(state.get("weights"), dict) or not isinstance(state.get("curve"), dict):
            return "not a model with its validation curve"
        weights = state["weights"]
        if missing := sorted(set(expected) - set(weights)):
            return f"missing weights {missing[:3]}"
        if unexpected := sorted(set(weights) - set(expected)):
            return f"unexpected weights {unexpected[:3]}"
        for name, (shape, dtype) in expected.items():
            found = weights[name]
            if not isinstance(found, Tensor) or tuple(found.shape) != shape or found.dtype != dtype:
                return f"weight {name!r} is {getattr(found, 'dtype', type(found).__name__)} {tuple(getattr(found, 'shape', ()))}, the backbone's is {dtype} {shape}"
        return None

    return check


@dataclass(frozen=True)
class OriginalModel:
    """The model the run corrects: ``model`` (in eval mode), whether it came from the cache or the
    user's checkpoint (``loaded``), and its validation curve (``None`` for a checkpoint)."""

    model: Classifier
    loaded: bool
    curve: Curve | None


def model_key(pipeline: Pipeline) -> str:
    """Cache key of the original model: data, backbone (and its weights file), and training and
    seed, or the checkpoint's content; and where it is computed (the device and the number of
    torch threads change the order of sums, so the bits of everything computed from it)."""
    c = pipeline.config
    # With `also`, the cached curve holds each epoch's test metrics: what they measure is part of the key.
    chosen = {**c.selection.model_dump(), "metrics": c.metrics, "evaluation": c.evaluation.model_dump()} if c.selection.also else c.selection.rule
    made = {"checkpoint": file_digest(c.original.checkpoint)} if c.original.checkpoint else {"training": c.training.model_dump(), "selection": chosen, "seed": c.seed}
    return cache_key(
        artefact="original-model",
        dataset={**component_key(pipeline.dataset, c.dataset), "files": pipeline.dataset.fingerprint()},
        backbone=component_key(pipeline.backbone, c.backbone),
        weights=pipeline.backbone.weights_digest(),
        computed_on={"device": pipeline.device.type, "threads": torch.get_num_threads()},
        **made,
    )


def new_model(pipeline: Pipeline, num_classes: int) -> Classifier:
    """An untrained model of the configured backbone; its initial weights depend on the seed only."""
    torch.manual_seed(pipeline.config.seed)
    return pipeline.backbone.build(num_classes).to(pipeline.device)


def selection(pipeline: Pipeline, features: SharedFeatures | None = None, original: Classifier | None = None) -> Selection:
    """Model selection for one trainer: the run's rule, on the validation split (from the original
    model's shared ``features`` of it where a model's backbone computed them). With other rules to
    report (``[selection] also``), each epoch is also evaluated on the test split as the evaluate
    stage does, from the ``original`` model's shared features of each split where given."""
    val, shares = load(pipeline, "val"), load(pipeline, "train").group_shares()

    def evaluate_val(model: Classifier) -> dict[str, float]:
        logits = features.logits(model) if features is not None else predict(model, val.images, pipeline.device)
        return validation_metrics(val, logits.argmax(dim=1), shares)

    if not pipeline.config.selection.also:
        return Selection(pipeline.config.selection.rule, evaluate_val)
    test = load(pipeline, "test")
    if original is not None:
        tested, others = shared_features(pipeline, original, test, "test"), evaluation_splits(pipeline, original)
    else:  # the original model itself in training: nothing computed from it yet
        unshared = lambda split: SharedFeatures(split.images, None, "", pipeline.device)  # noqa: E731
        tested, others = unshared(test), {name: (split := load(pipeline, name), unshared(split)) for name in evaluated_splits(pipeline)}
    return Selection(pipeline.config.selection.rule, evaluate_val, test=lambda model: evaluate(pipeline, model, tested, test, shares, others))


def original_model(pipeline: Pipeline, train: ImageSet) -> OriginalModel:
    """The original model: the ``[original] checkpoint``, or the ERM model trained or loaded from the cache."""
    model = new_model(pipeline, len(train.class_names))
    if checkpoint := pipeline.config.original.checkpoint:
        load_checkpoint(model, checkpoint, "original.checkpoint")
        return OriginalModel(model.eval(), True, None)
    device = pipeline.device

    def train_erm() -> dict:
        def batch_loss(indices: Tensor, images: Tensor) -> Tensor:
            logits = model(to_device(images, device))
            loss = F.cross_entropy(logits, to_device(train.labels[indices], device))
            log_term("cross_entropy", loss, "mean")
            return loss

        config = pipeline.config
        curve = fit(model, batch_loss, len(train), config.training, config.seed, "train original (ERM)", selection=selection(pipeline), images=train.images.augmented())
        return {"weights": {k: v.cpu() for k, v in model.state_dict().items()}, "curve": curve.as_dict()}

    state, cached = pipeline.cache.get_or_compute("models", pipeline.model_key, train_erm, fits_model(model))
    model.load_state_dict(state["weights"])
    return OriginalModel(model.eval(), cached, Curve.from_dict(state["curve"]))
