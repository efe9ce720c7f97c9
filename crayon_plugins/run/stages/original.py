"""Stage 2, the original model: trained by ERM (cached), or the user's checkpoint; and model
selection on validation, which every trainer of the run shares."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crayon_plugins.api.components import Predictions
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.model.checkpoints import file_digest, load_checkpoint
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures, predict
from crayon_plugins.plugins.metrics.groups import GroupAccuracy, InDistributionAccuracy
from crayon_plugins.run.cache import Check, cache_key
from crayon_plugins.run.stages.load import Load
from crayon_plugins.training.loop import fit, to_device
from crayon_plugins.training.selection import Curve, Selection


def validation_metrics(val: ImageSet, predicted: Tensor, train_shares: Tensor) -> dict[str, float]:
    """``wga``, ``mga`` and ``accuracy`` (in-distribution: group accuracies weighted by the training
    set's group shares), which use the validation group labels, and ``plain_accuracy``, which does
    not, of ``predicted`` classes of the validation split."""
    found = Predictions(val, predicted, train_shares)
    metrics = {**GroupAccuracy().compute(found), **InDistributionAccuracy().compute(found)}
    plain = float((predicted == val.labels).double().mean())
    return {**{k: metrics[k] for k in ("wga", "mga", "accuracy")}, "plain_accuracy": plain}


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


class Original(Load):
    @cached_property
    def model_key(self) -> str:
        """Cache key of the original model: data, backbone (and its weights file), and training and
        seed, or the checkpoint's content; and where it is computed (the device and the number of
        torch threads change the order of sums, so the bits of everything computed from it)."""
        c = self.config
        made = {"checkpoint": file_digest(c.original.checkpoint)} if c.original.checkpoint else {"training": c.training.model_dump(), "selection": c.selection.rule, "seed": c.seed}
        return cache_key(
            artefact="original-model",
            dataset={**self._key(self.dataset, c.dataset), "files": self.dataset.fingerprint()},
            backbone=self._key(self.backbone, c.backbone),
            weights=self.backbone.weights_digest(),
            computed_on={"device": self.device.type, "threads": torch.get_num_threads()},
            **made,
        )

    def new_model(self, num_classes: int) -> Classifier:
        """An untrained model of the configured backbone; its initial weights depend on the seed only."""
        torch.manual_seed(self.config.seed)
        return self.backbone.build(num_classes).to(self.device)

    def selection(self, features: SharedFeatures | None = None) -> Selection:
        """Model selection for one trainer: the run's rule, on the validation split (from the
        original model's shared ``features`` of it where a model's backbone computed them)."""
        val, shares = self.load("val"), self.load("train").group_shares()

        def evaluate(model: Classifier) -> dict[str, float]:
            logits = features.logits(model) if features is not None else predict(model, val.images, self.device)
            return validation_metrics(val, logits.argmax(dim=1), shares)

        return Selection(self.config.selection.rule, evaluate)

    def original_model(self, train: ImageSet) -> tuple[Classifier, bool, Curve | None]:
        """The original model (the ``[original] checkpoint``, or the ERM model trained or loaded from
        the cache), whether it was loaded, and its validation curve (``None`` for a checkpoint)."""
        model = self.new_model(len(train.class_names))
        if checkpoint := self.config.original.checkpoint:
            load_checkpoint(model, checkpoint, "original.checkpoint")
            return model.eval(), True, None

        def train_erm() -> dict:
            def batch_loss(indices: Tensor, images: Tensor) -> Tensor:
                logits = model(to_device(images, self.device))
                return F.cross_entropy(logits, to_device(train.labels[indices], self.device))

            curve = fit(model, batch_loss, len(train), self.config.training, self.config.seed, "train original (ERM)", selection=self.selection(), images=train.images.augmented())
            return {"weights": {k: v.cpu() for k, v in model.state_dict().items()}, "curve": curve.as_dict()}

        state, cached = self.cache.get_or_compute("models", self.model_key, train_erm, fits_model(model))
        model.load_state_dict(state["weights"])
        curve = state["curve"]
        return model.eval(), cached, Curve(curve["rule"], curve["validation"], curve["epoch"])
