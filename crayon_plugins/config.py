"""Run configuration: pydantic models, loaded from TOML and validated at the edge."""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, PrivateAttr, ValidationError, field_validator, model_validator

from crayon_plugins.errors import ConfigError
from crayon_plugins.utils.files import read_text


def describe_validation_error(error: ValidationError, where: str, prefix: str = "") -> str:
    """One line per problem: ``where: field.path: why (got value)``."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in (*filter(None, [prefix]), *problem["loc"]))
        got = f" (got {problem['input']!r})" if problem["type"] != "missing" else ""
        lines.append(f"{where}: {path or '<root>'}: {problem['msg']}{got}")
    return "\n".join(lines)


FLOAT32_MAX = 3.4028234663852886e38
"""Models train in float32: a larger number (``lr = 1e300``) is infinite there."""


def non_finite(data: Any, path: str = "") -> list[str]:
    """The dotted paths of every ``inf`` / ``nan`` number in nested ``data``, or one beyond float32's
    range (TOML and JSON can write all three; no option of the framework or its plugins means
    anything by them)."""
    if isinstance(data, float) and not (math.isfinite(data) and abs(data) <= FLOAT32_MAX):
        return [path or "<root>"]
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in non_finite(value, f"{path}.{key}" if path else str(key))]
    if isinstance(data, (list, tuple)):
        return [p for i, value in enumerate(data) for p in non_finite(value, f"{path}[{i}]")]
    return []


def reject_non_finite(data: Any, where: str, prefix: str = "", field: str | None = None) -> None:
    """:class:`ConfigError` naming ``where`` and each field of ``data`` that holds inf or nan
    (``prefix``: the path of ``data``; ``field``: the error's field)."""
    if bad := non_finite(data, prefix):
        raise ConfigError("\n".join(f"{where}: {path}: must be a finite number (within float32's ±3.4e38)" for path in bad), field or bad[0])


class ComponentSpec(BaseModel):
    """A component by registered name; every other key is one of its options (checked by the factory)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(min_length=1)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Optimisation(BaseModel):
    """How a model is trained: Adam for ``epochs`` passes in minibatches of ``batch_size``.

    ``amp``: mixed precision for the training step's forward pass and loss (``bf16`` on CPU or GPU;
    ``fp16``, with gradient scaling, on CUDA only). Grad-CAM inside a loss combines its gradients and
    activations in float32 either way; maps, features and evaluations are computed in float32.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: PositiveInt = 6
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: PositiveInt = 64
    amp: Literal["none", "bf16", "fp16"] = "none"


class Original(BaseModel):
    """The original model: trained by ERM (the default), or the user's own weights.

    ``checkpoint``: a file of weights for the configured backbone (a state dict, torchvision or timm
    names accepted; read with ``weights_only=True``, so nothing in it runs); ERM training is skipped
    and ``[training]`` does not apply to the original. A relative path is relative to the working
    directory. The file's content hash enters the cache keys of everything derived from the model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoint: str | None = Field(default=None, min_length=1)


class DataLoading(BaseModel):
    """How every stage reads minibatches of an on-disk dataset (the embedded benchmark sits in
    memory and ignores it).

    ``num_workers``: decoding processes; ``auto``: one per core but one, at most 8. ``pin_memory``:
    page-locked batches for faster copies to the GPU; ``auto``: on when the device is CUDA.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_workers: NonNegativeInt | Literal["auto"] = "auto"
    pin_memory: bool | Literal["auto"] = "auto"


class Panel(BaseModel):
    """Several annotators answer the same items; their answers are aggregated.

    The panel is ``size`` copies of ``annotator`` (and of ``neuron_annotator``), each with its own id
    and noise: annotator i's flip and abstention rates are the configured ones times a factor evenly
    spaced in ``[1 − spread, 1 + spread]``. See :mod:`crayon_plugins.annotation.panel`. People's
    answer files make a panel of their own: each person is a member.

    ``drawings``: how the regions several people drew on one image combine into the one a refiner
    gets: a pixel is kept where at least half of those who drew the image drew it (``majority``),
    where anyone did (``union``), or where everyone did (``intersection``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: PositiveInt = 1
    spread: float = Field(default=0.0, ge=0, le=1)
    aggregation: Literal["majority", "dawid-skene"] = "majority"
    drawings: Literal["majority", "union", "intersection"] = "majority"


class Budget(BaseModel):
    """Which share of the training items (maps, neurons) get annotated, and how they are chosen.

    ``uniform``: a seeded random subset (the CRAYON paper's). ``loss-guided``: the items the original
    model's training loss rests on most: the images with the highest loss, the neurons whose removal
    would change the loss most (first-order Taylor estimate). See :mod:`crayon_plugins.annotation.budget`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    fraction: float = Field(default=1.0, gt=0, le=1)
    selection: Literal["uniform", "loss-guided"] = "uniform"


Rule = Literal["last", "val-wga", "val-accuracy"]
"""Which epoch's weights a trainer keeps (see :class:`ModelSelection`)."""


class ModelSelection(BaseModel):
    """Which epoch's weights every trainer (the original model and each refiner) keeps; each
    evaluates the validation split after every epoch.

    ``val-accuracy`` (the default) needs nothing the user may not have. ``last``: the last epoch, as
    the CRAYON code does. ``val-wga``: the best validation worst-group
    accuracy, which uses validation group labels (Group DRO, JtT, DFR); ties broken by mean-group
    accuracy, then accuracy. ``val-accuracy``: the best share of validation items predicted right,
    which needs no group labels; ties broken by balanced accuracy. A tie on the rule's own metric is
    recorded in ``results.json`` and said under the table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: Rule = "val-accuracy"
    also: list[Rule] = Field(
        default_factory=list,
        description="other rules whose rows are reported from the same trainings: every trainer then also evaluates the test split after each epoch, "
        "so each rule's row is a lookup of the epoch it keeps (results.json: selection[].rules; crayon compare: table-RULE.md); "
        "every method still starts from the original model the run's own rule kept",
    )


class Logging(BaseModel):
    """What a run records beyond ``results.json`` (which always holds every trainer's per-epoch loss
    terms and validation metrics, also written to ``training.csv``).

    ``tensorboard``: also write them as TensorBoard event files under ``OUT/tensorboard/<method>``
    (``tensorboard --logdir OUT/tensorboard``); needs the ``tensorboard`` package
    (``pip install 'crayon-plugins[tensorboard]'``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    tensorboard: bool = False


class Sections(BaseModel):
    """A model whose component sections without ``name`` configure the default component."""

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for field, info in cls.model_fields.items():
            if info.annotation is ComponentSpec and isinstance(data.get(field), dict) and "name" not in data[field]:
                data[field] = {"name": info.default.name, **data[field]}
        return data


class Evaluation(Sections):
    """How the refined models are judged on the test split.

    ``judge`` answers the reasonability metric's question (does the map of the test image look at
    the right thing?). It is separate from ``annotator``, the annotator under study, and noise-free
    by default, so a noise study does not move its own yardstick.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    judge: ComponentSpec = ComponentSpec(name="saliency-oracle")


class RunConfig(Sections):
    """One run: data, backbone, original training, annotation, refiners and metrics.

    ``annotator`` judges the original model's saliency maps; ``concepts`` describes its neurons and
    ``neuron_annotator`` judges them (used only when a refiner needs neuron answers); ``panel`` makes
    several such annotators answer, ``budget`` limits which training items are annotated, ``selection``
    says which epoch each trainer keeps, ``evaluation`` who judges the test maps, ``logging`` what
    is recorded besides ``results.json``. ``refiner``
    holds per-refiner options keyed by refiner name; ``refiners`` says which to run. A component
    section without ``name`` configures the default component (``[concepts] k = 10``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = Field(
        default=0,
        description="seeds the training, and is the seed of the dataset and the annotation sources that have a seed option, unless their section sets it: a generated dataset and simulated annotators' noise vary with it",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dataset: ComponentSpec = ComponentSpec(name="spurious-bars")
    backbone: ComponentSpec = ComponentSpec(name="timm")
    original: Original = Original()
    training: Optimisation = Optimisation()
    loading: DataLoading = DataLoading()
    interpreter: ComponentSpec = ComponentSpec(name="captum-gradcam")
    annotator: ComponentSpec = ComponentSpec(name="saliency-oracle")
    concepts: ComponentSpec = ComponentSpec(name="top-patches")
    neuron_annotator: ComponentSpec = ComponentSpec(name="neuron-mask")
    panel: Panel = Panel()
    budget: Budget = Budget()
    selection: ModelSelection = ModelSelection()
    evaluation: Evaluation = Evaluation()
    logging: Logging = Logging()
    refiners: list[str] = Field(default_factory=lambda: ["crayon-attention"])
    refiner: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "group-accuracy", "reasonability"], min_length=1)
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this configuration was read from, named in errors (``None``: built in code)."""
        return self._source

    @field_validator("refiners", "metrics")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("names must not repeat")
        return names

    @field_validator("refiner")
    @classmethod
    def _no_name_option(cls, sections: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if named := [section for section, options in sections.items() if "name" in options]:
            raise ValueError(f"[refiner.{named[0]}] has a 'name' key; the section's own name is the refiner's")
        return sections

    def refiner_spec(self, name: str) -> ComponentSpec:
        return ComponentSpec(name=name, **self.refiner.get(name, {}))


def parse_config(data: dict[str, Any], where: str = "configuration") -> RunConfig:
    """Validate ``data``; :class:`ConfigError` naming ``where`` and each bad field otherwise."""
    reject_non_finite(data, where)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, where)) from None


def load_config(path: str | Path | None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> RunConfig:
    """Read a TOML run configuration (``None``: the defaults), with ``overrides`` applied
    (:func:`apply_overrides`) before it is validated."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(read_text(path, "configuration"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    data = apply_overrides(data, overrides)
    where = str(path) if path is not None else "configuration"
    config = parse_config(data, where + (" with the overrides" if overrides else ""))
    config._source = str(path) if path is not None else None
    return config


def apply_overrides(data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with each override set: ``"training.epochs=1"`` strings (the value is read as a TOML
    value, ``refiners=["finetune"]``, and as a string when it is not one) or a mapping of dotted keys
    (``{"refiner.crayon-attention.epochs": 2}``; a dict value is merged key by key). A key that names
    no field of the configuration is a :class:`ConfigError` naming it and the close names."""
    pairs = overrides.items() if isinstance(overrides, Mapping) else [_split_override(text) for text in overrides]
    data = copy.deepcopy(data)
    for key, value in pairs:
        if isinstance(value, Mapping):
            data = apply_overrides(data, {f"{key}.{k}": v for k, v in value.items()})
            continue
        path = key.split(".")
        _check_path(path, key)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {'.'.join(path[: i + 1])} holds {child!r}, not a section", key)
            node = child
        node[path[-1]] = value
    return data


def _split_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.epochs=1")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def _check_path(path: list[str], key: str) -> None:
    """A :class:`ConfigError` unless ``path`` walks fields of :class:`RunConfig` (into a component
    section or ``refiner.<name>`` any key may follow: the component checks its options)."""
    model: type[BaseModel] | None = RunConfig
    for i, part in enumerate(path):
        if model is None:
            return
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=3)
            where = ".".join(path[:i]) or "the configuration"
            raise ConfigError(f"override {key}: {where} has no key {part!r}" + (f"; close: {', '.join(close)}" if close else f"; it has {', '.join(fields)}"), key)
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation is not ComponentSpec else None
        if model is None and i < len(path) - 1 and annotation not in (ComponentSpec,) and part != "refiner":
            raise ConfigError(f"override {key}: {'.'.join(path[: i + 1])} is a value, not a section", key)
