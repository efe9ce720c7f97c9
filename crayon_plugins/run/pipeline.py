"""The run: load → original model → explain → annotate → refine → evaluate → report.

:class:`Pipeline` builds every component of a configuration up front (so a bad option fails before
any work) and runs the stages of :mod:`crayon_plugins.run.stages`, which it inherits in data-flow order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from crayon_plugins import factory
from crayon_plugins.api import components
from crayon_plugins.api.components import DRAWINGS, Need
from crayon_plugins.config import ComponentSpec, RunConfig
from crayon_plugins.errors import ConfigError, CrayonError
from crayon_plugins.oracles import panel
from crayon_plugins.registry import Registry, default_registry
from crayon_plugins.run.cache import ArtifactCache
from crayon_plugins.run.results import Results
from crayon_plugins.run.stages.report import Report


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a device, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrayonError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


@dataclass
class Pipeline(Report):
    """Every component of a run, built and validated up front, before any expensive work."""

    def __post_init__(self) -> None:
        if self.needs(*DRAWINGS) and "attention" not in self.annotator.judges():
            raise ConfigError(f"annotator: {self.config.annotator.name!r} does not draw attention maps, which refiners {self.needing(*DRAWINGS)} need")
        checkpoint = self.config.original.checkpoint
        if checkpoint and not Path(checkpoint).is_file():
            raise ConfigError(f"original.checkpoint: no file {checkpoint!r} (a relative path is relative to the working directory, {Path.cwd()})", "original.checkpoint")
        for metric in self.metrics:
            if missing := [s for s in metric.evaluation_splits if s not in self.dataset.evaluation_splits]:
                has = ", ".join(self.dataset.evaluation_splits) or "none"
                raise ConfigError(f"metrics: {metric.name!r} needs the evaluation split(s) {', '.join(missing)}, and dataset {self.config.dataset.name!r} has {has}", "metrics")

    @classmethod
    def from_config(
        cls, config: RunConfig, refiners: list[str] | None = None, cache: ArtifactCache | None = None, registry: Registry | None = None
    ) -> Pipeline:
        """Build the components named in ``config`` from ``registry`` (default: the installed
        plugins); ``refiners`` overrides ``config.refiners``. Errors name the configuration's file."""
        try:
            return cls._build(config, config.refiners if refiners is None else refiners, cache, registry or default_registry())
        except CrayonError as error:
            raise (error.within(config.source) if config.source else error) from error

    @classmethod
    def _build(cls, config: RunConfig, names: list[str], cache: ArtifactCache | None, registry: Registry) -> Pipeline:
        def create(kind: str, spec: ComponentSpec, where: str):
            return factory.create_from_spec(kind, spec, where, registry)

        def source(spec: ComponentSpec, where: str, question: str) -> components.AnnotationSource:
            found = create("annotation_source", spec, where)
            if question not in found.judges():
                can = " and ".join(sorted(found.judges())) or "nothing"
                raise ConfigError(f"{where}: {spec.name!r} does not judge {question} (it judges {can})")
            return found

        refiner = lambda n: create("refiner", config.refiner_spec(n), f"refiner.{n}")  # noqa: E731
        sections = {n: refiner(n) for n in config.refiner}  # a misspelled section would otherwise be ignored
        annotator = source(config.annotator, "annotator", "maps")
        neuron_annotator = source(config.neuron_annotator, "neuron_annotator", "neurons")
        return cls(
            config=config,
            registry=registry,
            dataset=create("dataset", config.dataset, "dataset"),
            backbone=create("backbone", config.backbone, "backbone"),
            interpreter=create("interpreter", config.interpreter, "interpreter"),
            annotator=annotator,
            concept_extractor=create("concept_extractor", config.concepts, "concepts"),
            neuron_annotator=neuron_annotator,
            judge=source(config.evaluation.judge, "evaluation.judge", "maps"),
            refiners={n: sections[n] if n in sections else refiner(n) for n in names},
            metrics=[create("metric", ComponentSpec(name=n), f"metrics[{n!r}]") for n in config.metrics],
            cache=cache or ArtifactCache(),
            device=resolve_device(config.device),
            map_panel=panel.members(annotator, config.panel, "annotator"),
            neuron_panel=panel.members(neuron_annotator, config.panel, "neuron_annotator"),
        )

    def prepare_shared(self) -> None:
        """Compute and cache what every refiner of this configuration shares: the original model,
        its maps of the training split, its pooled features of every split and, when a refiner
        needs neuron answers, its neurons' concepts. A study's first wave, once per seed."""
        train = self.load("train")
        model, _, _ = self.original_model(train)
        self.original_maps(model, train)
        for name in ("train", "val", "test"):
            self.shared_features(model, self.load(name), name)
        self.evaluation_splits(model)
        if self.needs(Need.NEURON_ANSWERS):
            self.concepts(model, train)

    def run(self, out: str | Path | None = None, include_original: bool = True) -> Results:
        """Run every stage; with ``out``, ``results.json`` is rewritten after every method. Without
        ``include_original`` the original model is not evaluated (a study evaluates it once per seed)."""
        train, val, test = self.load("train"), self.load("val"), self.load("test")
        self.warn_missing_groups(train, test)
        results = self.new_results()
        start = time.perf_counter()
        model, cached, curve = self.original_model(train)
        self.report_original(cached)
        context = self.refinement_context(model, train)
        evaluated = (test, self.shared_features(model, test, "test"))
        others = self.evaluation_splits(model)
        self.report_annotations(results, context, {"train": train, "val": val, "test": test, **{n: s for n, (s, _) in others.items()}})
        shares = train.group_shares()

        def record(method: str, refined, seconds: float, selected, needs: frozenset[str] = frozenset()) -> None:
            results.rows.append(self.result_row(method, refined, seconds, selected, needs, evaluated, others, shares))
            if out is not None:
                results.write(out)

        if include_original:
            record("original", model, time.perf_counter() - start, curve)
        for name, refiner in self.refiners.items():
            start = time.perf_counter()
            refined = self.refine(name, model, context, out)
            record(name, refined, time.perf_counter() - start, context.selection.curve, refiner.needs)
        return results
