"""Saved models: a folder with the weights as safetensors and a JSON card, loadable anywhere.

``save_model`` writes ``weights.safetensors`` (the network's weights under its own names, so they
load into a plain timm or torchvision model) and then ``card.json`` (how to build the network, the
class names, the input it expects, the pruning mask, how the model was made and what it scored).
``load_model`` reads both back into a ready :class:`~crayon_plugins.model.classifier.Classifier`;
``export_model`` writes a ``torch.export`` program or an ONNX graph. Nothing here unpickles: the
card is JSON and the weights are safetensors, so a crafted folder cannot run code.
"""

from __future__ import annotations

import json
import platform
import shutil
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crayon_plugins.config import describe_validation_error
from crayon_plugins.errors import ConfigError, CrayonError
from crayon_plugins.model.checkpoints import file_digest
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.utils.files import publish, write_atomically

CARD = "card.json"
WEIGHTS = "weights.safetensors"
FORMAT = 1
"""The card's format version; a card of another version is refused with a message."""

PACKAGES = ("crayon-plugins", "torch", "torchvision", "timm", "captum", "numpy", "safetensors")
"""The packages whose versions a card and ``results.json`` record."""


class ExportFormat(StrEnum):
    """What ``crayon export`` writes: the weights, a ``torch.export`` program, or an ONNX graph."""

    SAFETENSORS = "safetensors"
    TORCH = "torch"
    ONNX = "onnx"


EXPORT_FILES = {ExportFormat.SAFETENSORS: WEIGHTS, ExportFormat.TORCH: "model.pt2", ExportFormat.ONNX: "model.onnx"}
"""Each export format's file in the model's folder."""


def package_versions() -> dict[str, str]:
    """The Python version and the versions of the packages a model's numbers depend on."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


class Input(BaseModel):
    """What the model takes: ``(B, 3, H, W)`` images with values in ``[0, 1]``; it subtracts ``mean``
    and divides by ``std`` itself. ``resize``: the side images were resized to before a centre crop
    to ``size`` (``None``: the dataset made its images at ``size``)."""

    model_config = ConfigDict(extra="forbid")
    size: tuple[int, int]
    resize: int | None = None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ModelCard(BaseModel):
    """``card.json``: everything needed to use a saved model, and where it came from."""

    model_config = ConfigDict(extra="forbid")
    format: int = FORMAT
    method: str = Field(description="the refiner that made the model, or 'original'")
    seed: int
    backbone: dict[str, Any] = Field(description="the backbone component: name and resolved options (crayon-plugins rebuilds it from these)")
    build: dict[str, Any] | None = Field(description="how to build the network in its own library, without crayon-plugins")
    classes: list[str] = Field(min_length=1)
    input: Input
    pruned_neurons: list[int] = Field(description="channels of the feature map the model multiplies by zero")
    channels: int = Field(gt=0, description="channels of the feature map")
    refiner: dict[str, Any] | None = Field(description="the refiner's name and resolved options (None: the original model)")
    selection: dict[str, Any] = Field(description="the selection rule and the epoch whose weights were kept")
    metrics: dict[str, Any] = Field(description="the model's row of results.json")
    annotations: dict[str, dict[str, int]] = Field(default_factory=dict, description="the answers the refiner used, by question")
    versions: dict[str, str]
    weights_sha256: str


def save_model(model: Classifier, folder: str | Path, card: dict[str, Any]) -> Path:
    """Write ``model`` to ``folder``: ``weights.safetensors``, then ``card.json`` from ``card`` (the
    fields of :class:`ModelCard` but the mask, the channels, the versions and the weights' digest,
    which are filled in here). The card is written last, so a folder with a card has whole weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to("cpu", copy=True).contiguous() for key, value in model.network_state_dict().items()}
    weights = folder / WEIGHTS
    partial = folder / f".{WEIGHTS}.tmp"
    safetensors.torch.save_file(state, str(partial), metadata={"format": "pt"})
    publish(partial, weights)
    mask = model.neuron_mask.detach().cpu()
    full = ModelCard(
        **card,
        pruned_neurons=torch.nonzero(mask == 0).flatten().tolist(),
        channels=len(mask),
        versions=package_versions(),
        weights_sha256=file_digest(weights),
    )
    write_atomically(folder / CARD, json.dumps(full.model_dump(mode="json"), indent=2, allow_nan=False) + "\n")
    return folder


def read_card(folder: str | Path) -> ModelCard:
    """The card of the saved model in ``folder``; a :class:`ConfigError` naming the file otherwise."""
    path = Path(folder) / CARD
    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: no such model folder (a folder holding {CARD} and {WEIGHTS})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no model card; a saved model's folder holds {CARD} and {WEIGHTS}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON model card ({error})") from None
    if isinstance(data, dict) and data.get("format") != FORMAT:
        raise ConfigError(f"{path}: format {data.get('format')!r}; this version of crayon-plugins reads format {FORMAT}")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, str(path))) from None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """The saved model in ``folder``, ready to predict (in eval mode, on ``device``).

    The backbone plugin named in the card rebuilds the network (without reading pretrained weights),
    then the weights are loaded and the pruning mask set. ``model.card`` holds the
    :class:`ModelCard` (``model.card.classes`` names the outputs)."""
    from crayon_plugins.factory import create_backbone

    folder = Path(folder)
    card = read_card(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{weights}: missing; the card {folder / CARD} describes weights that are not there")
    if file_digest(weights) != card.weights_sha256:
        raise ConfigError(f"{weights}: its SHA-256 differs from the one in {CARD}; the file was changed or is incomplete")
    backbone = create_backbone(card.backbone["name"], card.backbone.get("options", {}), where=f"{folder / CARD}: backbone")
    try:
        state = safetensors.torch.load_file(str(weights), device="cpu")
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error type for a malformed file
        raise ConfigError(f"{weights}: not a safetensors file ({error})") from None
    model = backbone.architecture(len(card.classes))
    try:
        model.load_network_state_dict(state)
    except (KeyError, RuntimeError) as error:
        raise ConfigError(f"{weights}: does not fit backbone {card.backbone['name']!r} with {len(card.classes)} classes: {error}") from None
    if len(model.neuron_mask) != card.channels:
        raise ConfigError(f"{folder / CARD}: channels is {card.channels}, the backbone's feature map has {len(model.neuron_mask)}")
    with torch.no_grad():
        model.neuron_mask.fill_(1)
        model.neuron_mask[card.pruned_neurons] = 0
        model.mean.copy_(torch.tensor(card.input.mean).view(1, 3, 1, 1))
        model.std.copy_(torch.tensor(card.input.std).view(1, 3, 1, 1))
    model.card = card
    return model.to(device).eval()


def export_model(folder: str | Path, format: ExportFormat | str, out: str | Path | None = None) -> Path:
    """Write the saved model in ``folder`` as ``format`` to ``out`` (default: ``folder`` /
    :data:`EXPORT_FILES`\\[format]); returns the path.

    ``torch``: a ``torch.export`` program (``torch.export.load(path).module()`` runs it with no model
    code); ``onnx``: an ONNX graph through ``torch.onnx.export``, input ``images`` ``(B, 3, H, W)`` in
    ``[0, 1]``, output ``logits``. Both include the normalisation and the pruning mask, and take any
    batch size. ``safetensors``: the weights file itself, copied to ``out``."""
    folder, format = Path(folder), ExportFormat(format)
    card = read_card(folder)
    out = Path(out) if out is not None else folder / EXPORT_FILES[format]
    if format == "safetensors":
        if out.resolve() != (folder / WEIGHTS).resolve():
            shutil.copyfile(folder / WEIGHTS, out)
        return out
    model = load_model(folder)
    example = torch.rand(2, 3, *card.input.size)
    batch = torch.export.Dim("batch", min=1)
    try:
        if format == "torch":
            torch.export.save(torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}}), str(out))
        else:
            _export_onnx(model, example, out, batch)
    except CrayonError:
        raise
    except Exception as error:  # noqa: BLE001 - the exporters raise many kinds; the message says which step failed
        raise CrayonError(f"export {folder} as {format}: {type(error).__name__}: {error}") from error
    return out


def _export_onnx(model: Classifier, example: torch.Tensor, out: Path, batch: torch.export.Dim) -> None:
    try:
        import onnxscript  # noqa: F401 - torch.onnx.export needs it
    except ImportError:
        raise CrayonError("export as onnx needs the onnx and onnxscript packages: pip install 'crayon-plugins[onnx]'") from None
    program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["logits"], dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False)
    program.save(str(out))
