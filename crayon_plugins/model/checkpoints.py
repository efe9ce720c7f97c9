"""Weights from files the user supplies: tensors only, every name and shape checked.

Files are read with ``torch.load(weights_only=True)`` (or as ``.safetensors``), so nothing in them can
run code. A checkpoint is a state dict, bare or wrapped in a dict under ``state_dict``, ``model`` or
``model_state_dict``; a ``module.`` (DataParallel) or ``_orig_mod.`` (``torch.compile``) prefix is
stripped. Any key the model lacks, or the file lacks, or any shape that differs is a
:class:`~crayon_plugins.errors.ConfigError` naming the file and the configuration field.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from crayon_plugins.errors import ConfigError
from crayon_plugins.model.classifier import OWN_BUFFERS, Classifier

WRAPPERS = ("state_dict", "model", "model_state_dict")
"""Keys under which a training checkpoint may hold its model's state dict."""

PREFIXES = ("module.", "_orig_mod.")
"""Prefixes that ``nn.DataParallel`` / ``DistributedDataParallel`` and ``torch.compile`` add to every key."""

_SHOWN = 5


def file_digest(path: str | Path) -> str:
    """The SHA-256 hex digest of the file's content (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, where: str) -> dict[str, Tensor]:
    """The tensors of the checkpoint at ``path``, unwrapped and with wrapper prefixes stripped.

    ``where`` is the configuration field that named the file; every error names it and the file.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{where}: {path}: no such checkpoint file", where)
    if path.is_dir():
        raise ConfigError(f"{where}: {path}: is a folder, not a checkpoint file", where)
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            data = safetensors.torch.load_file(path, device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, KeyError …
        kind = (
            "holds objects other than tensors" if isinstance(error, pickle.UnpicklingError) else "is not a checkpoint"
        )
        raise ConfigError(
            f"{where}: {path} {kind} ({_reason(error)}); only tensors are loaded "
            "(torch.load weights_only=True), nothing in the file is run",
            where,
        ) from None
    state = _unwrap(data)
    if state is None:
        raise ConfigError(
            f"{where}: {path}: not a state dict (a dict of tensors, or one under {' / '.join(WRAPPERS)})", where
        )
    state = {_strip(key): value for key, value in state.items()}
    for key, value in state.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ConfigError(f"{where}: {path}: {key} holds {bad} NaN or infinite value{'s' * (bad > 1)} of {value.numel()}; the file is damaged or was saved from a training that diverged", where)
    return state


def load_checkpoint(model: Classifier, path: str | Path, where: str = "original.checkpoint") -> None:
    """Load the weights at ``path`` into ``model`` in place.

    The file is either ``model``'s own state dict (keys ``body.…``, ``classifier.…``, and optionally
    ``mean``, ``std``, ``feature_map.mask``) or the state dict of the bare network ``model.body``
    wraps, named as torchvision or timm name it (``conv1.weight`` … ``fc.weight``): its head
    (``fc.*``, ``classifier.*``, ``head.*``, whatever ``body.get_classifier()`` is called) becomes
    ``model.classifier``. For a backbone cut after a feature stage the bare network's file also holds
    the head as ``classifier.*`` (as a saved model's ``weights.safetensors`` does); a whole
    network's file does not fit it.
    """
    state = read_state_dict(path, where)
    body = getattr(model, "body", None)
    if isinstance(body, nn.Module) and not any(key.startswith("body.") for key in state):
        cut = not any(module is model.classifier for module in body.modules())
        if cut and "classifier.weight" not in state:
            raise ConfigError(
                f"{where}: {path} holds a bare network's weights (keys like {next(iter(state), '?')!r}), which fit "
                "only a whole network, but this backbone is cut after a feature stage and has its own classifier; "
                'set backbone.feature_stage = "whole"',
                where,
            )
        state = model.own_names(state)
    check_fits(model, state, path, where, optional=OWN_BUFFERS)
    model.load_state_dict(state, strict=False)


def load_network_weights(
    network: nn.Module, state: Mapping[str, Tensor], path: str | Path, where: str, head: Iterable[str]
) -> None:
    """Load a pretrained network's ``state`` into ``network`` (the same architecture), in place.

    The classifier, the modules named in ``head``, is loaded when the file has it with the same shapes
    (the same number of classes) and keeps its fresh initialisation otherwise; every other key must
    match.
    """
    prefixes = tuple(f"{name}." for name in head)
    own = network.state_dict()
    heads = [key for key in own if key.startswith(prefixes)]
    fits = all(key in state and state[key].shape == own[key].shape for key in heads)
    body = {key: value for key, value in state.items() if not key.startswith(prefixes)}
    check_fits(network, body, path, where, optional=heads)
    network.load_state_dict({**body, **{key: state[key] for key in heads}} if fits else body, strict=False)


def check_fits(
    model: nn.Module, state: Mapping[str, Tensor], path: str | Path, where: str, optional: Iterable[str] = ()
) -> None:
    """A :class:`ConfigError` unless ``state`` has exactly ``model``'s keys (those in ``optional`` may be
    absent), each with the model's shape; it names the file and up to five keys of each kind."""
    own = model.state_dict()
    optional = set(optional)
    missing = [key for key in own if key not in state and key not in optional]
    unexpected = [key for key in state if key not in own]
    mismatched = [key for key in own if key in state and state[key].shape != own[key].shape]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s) the model has: {_some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) the model lacks: {_some(unexpected)}")
    if mismatched:
        shapes = [f"{key} (file {_shape(state[key])}, model {_shape(own[key])})" for key in mismatched[:_SHOWN]]
        parts.append(
            f"{len(mismatched)} shape mismatch(es): {', '.join(shapes)}{', …' if len(mismatched) > _SHOWN else ''}"
        )
        if "classifier.weight" in mismatched:
            theirs, ours = state["classifier.weight"].shape[0], own["classifier.weight"].shape[0]
            parts.append(f"the file's classifier has {theirs} classes, the model's {ours}")
    raise ConfigError(f"{where}: {path} does not fit the model: {'; '.join(parts)}", where)


def _unwrap(data: object) -> Mapping[str, Tensor] | None:
    if not isinstance(data, Mapping):
        return None
    if data and all(isinstance(key, str) and isinstance(value, Tensor) for key, value in data.items()):
        return data
    return next((state for key in WRAPPERS if (state := _unwrap(data.get(key))) is not None), None)


def _strip(key: str) -> str:
    while key.startswith(PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _reason(error: Exception) -> str:
    """The line of a loading error that says what was wrong (torch's first lines are advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines[1:] if not line.startswith(("Check the documentation", "Please file an issue"))]
    return (useful or lines or [type(error).__name__])[0]


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (", …" if len(keys) > _SHOWN else "")


def _shape(tensor: Tensor) -> str:
    return "×".join(map(str, tensor.shape)) or "scalar"
