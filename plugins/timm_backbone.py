"""Any timm model as a backbone (random initialisation; nothing is downloaded)."""

from __future__ import annotations

import difflib

import timm
from pydantic import Field
from torch import Tensor, nn

from crayon_plugins.components import Backbone, Params
from crayon_plugins.errors import ConfigError
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.model import Classifier


class TimmClassifier(Classifier):
    """A timm model split at ``forward_features`` / ``forward_head``."""

    def __init__(self, body: nn.Module) -> None:
        config = body.pretrained_cfg
        super().__init__(tuple(config.get("mean", (0.5,) * 3)), tuple(config.get("std", (0.5,) * 3)))
        self.body = body

    def forward_features(self, normalised: Tensor) -> Tensor:
        return self.body.forward_features(normalised)

    def head(self, features: Tensor) -> Tensor:
        return self.body.forward_head(features)


class TimmBackbone(Backbone):
    """``timm.create_model(model, num_classes=…, output_stride=…)``.

    The default, ``resnet10t`` with ``output_stride = 16``, trains at roughly 150 images/s on two CPU
    cores at 64×64 and gives Grad-CAM a 4×4 grid there (``image size / output_stride``).
    """

    class Params(Params):
        model: str = "resnet10t"
        output_stride: int | None = Field(default=16, description="8, 16 or 32; null for models without it")

    def build(self, num_classes: int) -> Classifier:
        name = self.params.model
        kwargs = {} if self.params.output_stride is None else {"output_stride": self.params.output_stride}
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            raise ConfigError(f"backbone.model: timm has no model {name!r}" + (f"; close: {', '.join(close)}" if close else ""))
        try:
            body = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        except TypeError as error:
            raise ConfigError(
                f"backbone.output_stride: timm model {name!r} does not accept it ({error}); set output_stride to null"
            ) from None
        return TimmClassifier(body)


@hookimpl
def crayon_backbones():
    return {"timm": TimmBackbone}
