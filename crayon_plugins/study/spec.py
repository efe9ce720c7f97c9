"""Study specifications: a base run configuration and grid axes, read from TOML and validated."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crayon_plugins.config import RunConfig, describe_validation_error, non_finite
from crayon_plugins.errors import ConfigError, CrayonError
from crayon_plugins.run.cache import cache_key
from crayon_plugins.run.stages.refine import CONTROL
from crayon_plugins.utils.files import read_text

Fraction = Annotated[float, Field(gt=0, le=1)]
Rate = Annotated[float, Field(ge=0, le=1)]
Bias = Annotated[float, Field(ge=-1, le=1)]
T = TypeVar("T")
Axis = Annotated[list[T], Field(min_length=1)]

NOISE_AXES = ("flip_rate", "abstain_rate", "yes_bias", "answer_mix")
"""Axes that set the noise of both the map annotator and the neuron annotator."""
AXES = ("budget", "selection", *NOISE_AXES, "panel_size", "spread", "aggregation")
"""Grid axes besides ``refiner``, ``seed`` and refiner options, in the order of ``results.csv``'s columns."""

OPTION_AXIS = re.compile(r"^refiner\.([a-z0-9][a-z0-9+_-]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
"""A refiner option as an axis: ``"refiner.crayon-attention.w_no" = [10, 100, 1000]``."""


class Grid(BaseModel):
    """The values each axis takes; an axis left out keeps the base configuration's value.

    ``budget`` and ``selection`` set ``[budget]``; ``flip_rate``, ``abstain_rate``, ``yes_bias`` and
    ``answer_mix`` (``"none"`` or a dataset of :data:`~crayon_plugins.annotation.paper_mix.REAL_ANNOTATORS`) set both annotators' noise;
    ``panel_size``, ``spread`` and ``aggregation`` set ``[panel]``; ``refiner`` defaults to the base
    configuration's refiners and ``seed`` to its seed. Any refiner option is an axis too, under a
    quoted key ``"refiner.NAME.OPTION" = [values]``: it sets ``[refiner.NAME] OPTION`` in the cells
    of refiner NAME (the factory checks the option exists).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    refiner: Axis[str] | None = None
    seed: Axis[int] | None = None
    budget: Axis[Fraction] | None = None
    selection: Axis[Literal["uniform", "loss-guided"]] | None = None
    flip_rate: Axis[Rate] | None = None
    abstain_rate: Axis[Rate] | None = None
    yes_bias: Axis[Bias] | None = None
    answer_mix: Axis[Literal["none", "Waterbirds", "Biased CelebA", "Backgrounds Challenge"]] | None = None
    panel_size: Axis[Annotated[int, Field(ge=1)]] | None = None
    spread: Axis[Rate] | None = None
    aggregation: Axis[Literal["majority", "dawid-skene"]] | None = None

    options: dict[str, Axis[Any]] = Field(default_factory=dict, description="the refiner-option axes, by key")

    @field_validator("options")
    @classmethod
    def _option_keys(cls, options: dict[str, list]) -> dict[str, list]:
        if bad := [key for key in options if not OPTION_AXIS.match(key)]:
            raise ValueError(f"{bad[0]!r} is not a refiner option: write \"refiner.NAME.OPTION\"")
        return options

    @model_validator(mode="before")
    @classmethod
    def _collect_options(cls, data: Any) -> Any:
        """Gather the ``"refiner.NAME.OPTION"`` keys into :attr:`options`."""
        if isinstance(data, dict) and any(OPTION_AXIS.match(str(key)) for key in data):
            data = dict(data)
            data["options"] = {**data.get("options", {}), **{key: data.pop(key) for key in list(data) if OPTION_AXIS.match(str(key))}}
        return data

    def varied(self) -> list[str]:
        """The axes given (besides ``refiner`` and ``seed``), in :data:`AXES` order, then the
        refiner options in the order given."""
        return [axis for axis in AXES if getattr(self, axis) is not None] + list(self.options)

    def values(self, axis: str) -> list:
        """The values ``axis`` takes."""
        return self.options[axis] if axis in self.options else getattr(self, axis)


class StudySpec(BaseModel):
    """A study: ``title``, the ``question`` it answers (shown in its report), the torch ``threads``
    of every cell, a ``base`` run configuration (the keys of ``crayon run --config``) and the
    ``grid``. The threads are the study's, not the machine's: another thread count sums in another
    order, so a cell's numbers would depend on where it ran. ``save_models``: keep every cell's model
    (off by default: a study of many cells would fill the disk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = Field(min_length=1)
    question: str = ""
    threads: int = Field(1, ge=1)
    save_models: bool = Field(False, description="save every cell's model under OUT/models/<cell key>/<method> (off: a study of many cells would fill the disk)")
    base: RunConfig = RunConfig()
    grid: Grid = Grid()

    @model_validator(mode="after")
    def _no_repeats(self):
        for axis, values in [*self.grid, *self.grid.options.items()]:
            if axis == "options":
                continue
            if values is not None and len(set(map(repr, values))) != len(values):
                raise ValueError(f"grid.{axis}: values must not repeat")
        return self

    def refiners(self) -> list[str]:
        return self.grid.refiner or self.base.refiners

    def seeds(self) -> list[int]:
        return self.grid.seed or [self.base.seed]

    def cells(self) -> list[Cell]:
        """Every cell: per seed the original model, then every refiner × axis combination (a
        refiner-option axis only in the cells of its refiner)."""
        out = [Cell("original", seed, {}, self._config(seed, "original", {}), self.threads) for seed in self.seeds()]
        for refiner in self.refiners():
            varied = [a for a in self.grid.varied() if not OPTION_AXIS.match(a) or OPTION_AXIS.match(a).group(1) == refiner]
            for seed, *values in itertools.product(self.seeds(), *(self.grid.values(a) for a in varied)):
                axes = dict(zip(varied, values))
                out.append(Cell(refiner, seed, axes, self._config(seed, refiner, axes), self.threads))
        return out

    def _config(self, seed: int, refiner: str, axes: dict[str, Any]) -> RunConfig:
        data = self.base.model_dump(mode="json")
        data.update(seed=seed, refiners=[] if refiner == "original" else [refiner])
        noise = {axis: axes[axis] for axis in NOISE_AXES if axis in axes}
        if noise.get("answer_mix") == "none":
            noise["answer_mix"] = None
        for field in ("annotator", "neuron_annotator"):
            data[field] = {**data[field], **noise}
        budget = {"fraction": axes.get("budget", self.base.budget.fraction), "selection": axes.get("selection", self.base.budget.selection)}
        if budget["fraction"] >= 1:
            budget["selection"] = "uniform"  # every item is annotated: the strategy cannot matter
        data["budget"] = budget
        data["panel"] = {**data["panel"], **{k: axes[a] for k, a in (("size", "panel_size"), ("spread", "spread"), ("aggregation", "aggregation")) if a in axes}}
        for key in self.grid.options:
            name, option = OPTION_AXIS.match(key).groups()
            if key in axes:
                data["refiner"] = {**data["refiner"], name: {**data["refiner"].get(name, {}), option: axes[key]}}
        if refiner == CONTROL:  # the control trains as the method it controls in a run of all the refiners
            from crayon_plugins.registry import default_registry
            from crayon_plugins.run.pipeline import control_options

            data["refiner"] = {**data["refiner"], CONTROL: {**control_options(self.base, self.refiners(), default_registry()), **data["refiner"].get(CONTROL, {})}}
        try:
            return RunConfig.model_validate(data)
        except ValidationError as error:
            where = f"cell {refiner} seed {seed} " + " ".join(f"{k}={v}" for k, v in axes.items())
            raise ConfigError(describe_validation_error(error, where)) from None


@dataclass(frozen=True)
class Cell:
    """One run of a study: ``refiner`` (or ``"original"``) on ``seed`` with the ``axes`` values,
    with ``threads`` torch threads."""

    refiner: str
    seed: int
    axes: dict[str, Any]
    config: RunConfig
    threads: int = 1

    @property
    def key(self) -> str:
        """Identifies the computation: cells with the same effective configuration and threads
        share a key (``[loading]`` is left out: how batches are read does not change results; the
        device is in the cell's record, as the executor resolves ``auto``). Files the configuration
        names (data, checkpoint, weights) are named, not hashed: a study over files replaced in
        place needs a new ``--out``."""
        config = self.config.model_dump(mode="json", exclude={"loading", "device"})
        return cache_key(artefact="study-cell", config=config, refiner=self.refiner, threads=self.threads)

    def on(self, device: str) -> Cell:
        """This cell on ``device`` (``cpu`` or ``cuda``, as the executor resolved ``auto``)."""
        return replace(self, config=self.config.model_copy(update={"device": device}))


def _line_of(text: str, loc: tuple) -> int | None:
    """The line of the TOML key at ``loc`` (a pydantic error location), if it can be found."""
    names = [str(part) for part in loc if isinstance(part, str)]
    table: list[str] = []
    best, best_depth = None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            table = [part.strip().strip('"') for part in header.group(1).split(".")]
            if names[: len(table)] == table and len(table) > best_depth:
                best, best_depth = number, len(table)
            continue
        key = re.match(r'^\s*"?([^"=\s]+)"?\s*=', line)
        if key:
            path = table + key.group(1).split(".")
            if names[: len(path)] == path and len(path) > best_depth:
                best, best_depth = number, len(path)
    return best


def _where(path: Path, text: str, field: str) -> str:
    """``path:line`` of the dotted ``field`` in the specification ``text`` (``path`` if not found)."""
    line = _line_of(text, tuple(re.sub(r"\[\d+\]$", "", field).split(".")))
    return f"{path}:{line}" if line else str(path)


def base_error(path: Path, error: CrayonError) -> ConfigError:
    """``error``, raised by the study's base configuration, as an error at its ``base.`` field and line."""
    if error.field is None:
        return ConfigError(f"{path}: base: {error}")
    field = f"base.{error.field}"
    message = "\n".join(line.replace(error.field, field, 1) for line in str(error).splitlines())
    return ConfigError(f"{_where(path, read_text(path, 'study specification'), field)}: {message}", field)


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study specification; errors name the file, line and field."""
    path = Path(path)
    text = read_text(path, "study specification")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    if bad := non_finite(data):
        raise ConfigError("\n".join(f"{_where(path, text, field)}: {field}: must be a finite number (within float32's ±3.4e38)" for field in bad))
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            where = _where(path, text, ".".join(map(str, problem["loc"])))
            lines.append(describe_validation_error(ValidationError.from_exception_data(error.title, [problem]), where))
        raise ConfigError("\n".join(lines)) from None
    for key in spec.grid.options:  # a misspelled refiner would make the axis change nothing
        if (name := OPTION_AXIS.match(key).group(1)) not in spec.refiners():
            raise ConfigError(f"{_where(path, text, f'grid.{key}')}: grid.{key}: refiner {name!r} is not among the study's refiners {spec.refiners()}", f"grid.{key}")
    spec.cells()  # every cell's configuration is valid
    return spec
