"""The run: load → original model → explain → annotate → refine → evaluate → report.

:class:`Pipeline` is a run's record: its configuration and every component built from it up front
(so a bad option fails before any work), its cache and device. :meth:`Pipeline.run` calls the stage
functions of :mod:`crayon_plugins.run.stages` in data-flow order and tells its observers
(:class:`~crayon_plugins.run.stages.report.RunObserver`) what it did.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from crayon_plugins import factory
from crayon_plugins.annotation import panel
from crayon_plugins.annotation.records import Question
from crayon_plugins.api import components
from crayon_plugins.api.components import DRAWINGS, MAP_JUDGEMENTS, Need
from crayon_plugins.api.finetuning import FineTuning
from crayon_plugins.config import ComponentSpec, Optimisation, RunConfig
from crayon_plugins.errors import ConfigError, CrayonError, RunIncomplete
from crayon_plugins.registry import Registry, default_registry
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.results import Results
from crayon_plugins.run.stages.evaluate import evaluation_splits
from crayon_plugins.run.stages.explain import concepts, original_maps, original_test_maps, predicted_maps, shared_features
from crayon_plugins.run.stages.load import check_disjoint, load, warn_missing_groups
from crayon_plugins.run.stages.original import model_key, original_model
from crayon_plugins.run.stages.refine import CONTROL, refine, refinement_context
from crayon_plugins.run.stages.report import ConsoleReport, ModelFiles, ResultsFile, RunObserver, TensorBoardLog, new_results, record_annotations, refused_row, result_row

SPLITS = ("train", "val", "test")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a device, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrayonError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


@dataclass(frozen=True)
class Pipeline:
    """Every component of a run, built and validated up front, before any expensive work."""

    config: RunConfig
    registry: Registry
    dataset: components.Dataset
    backbone: components.Backbone
    interpreter: components.Interpreter
    annotator: components.AnnotationSource
    concept_extractor: components.ConceptExtractor
    neuron_annotator: components.AnnotationSource
    judge: components.AnnotationSource
    refiners: dict[str, components.Refiner]
    metrics: list[components.Metric]
    cache: ArtefactCache
    device: torch.device
    map_panel: list[components.AnnotationSource]
    neuron_panel: list[components.AnnotationSource]

    def __post_init__(self) -> None:
        if self.needs(*DRAWINGS) and Question.ATTENTION not in self.annotator.judges():
            raise ConfigError(f"annotator: {self.config.annotator.name!r} does not draw attention maps, which refiners {self.needing(*DRAWINGS)} need")
        if self.config.logging.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("logging.tensorboard: needs the tensorboard package; pip install 'crayon-plugins[tensorboard]', or set it to false", "logging.tensorboard")
        checkpoint = self.config.original.checkpoint
        if checkpoint and not Path(checkpoint).is_file():
            raise ConfigError(f"original.checkpoint: no file {checkpoint!r} (a relative path is relative to the working directory, {Path.cwd()})", "original.checkpoint")
        for metric in self.metrics:
            if missing := [s for s in metric.evaluation_splits if s not in self.dataset.evaluation_splits]:
                has = ", ".join(self.dataset.evaluation_splits) or "none"
                raise ConfigError(f"metrics: {metric.name!r} needs the evaluation split(s) {', '.join(missing)}, and dataset {self.config.dataset.name!r} has {has}", "metrics")

    @classmethod
    def from_config(
        cls, config: RunConfig, refiners: list[str] | None = None, cache: ArtefactCache | None = None, registry: Registry | None = None
    ) -> Pipeline:
        """Build the components named in ``config`` from ``registry`` (default: the installed
        plugins); ``refiners`` overrides ``config.refiners``. Errors name the configuration's file."""
        try:
            return cls._build(config, config.refiners if refiners is None else refiners, cache, registry or default_registry())
        except CrayonError as error:
            raise (error.within(config.source) if config.source else error) from error

    @classmethod
    def _build(cls, config: RunConfig, names: list[str], cache: ArtefactCache | None, registry: Registry) -> Pipeline:
        def create(kind: str, spec: ComponentSpec, where: str):
            return factory.create_from_spec(kind, run_seeded(kind, spec, config.seed, registry), where, registry)

        def source(spec: ComponentSpec, where: str, question: Question) -> components.AnnotationSource:
            found = create("annotation_source", spec, where)
            if question not in found.judges():
                can = " and ".join(sorted(found.judges())) or "nothing"
                raise ConfigError(f"{where}: {spec.name!r} does not judge {question} (it judges {can})")
            return found

        spec = lambda n: ComponentSpec(name=n, **control_options(config, names, registry)) if n == CONTROL else config.refiner_spec(n)  # noqa: E731
        refiner = lambda n: create("refiner", spec(n), f"refiner.{n}")  # noqa: E731
        sections = {n: refiner(n) for n in config.refiner}  # a misspelled section would otherwise be ignored
        annotator = source(config.annotator, "annotator", Question.MAPS)
        neuron_annotator = source(config.neuron_annotator, "neuron_annotator", Question.NEURONS)
        return cls(
            config=config,
            registry=registry,
            dataset=create("dataset", config.dataset, "dataset"),
            backbone=create("backbone", config.backbone, "backbone"),
            interpreter=create("interpreter", config.interpreter, "interpreter"),
            annotator=annotator,
            concept_extractor=create("concept_extractor", config.concepts, "concepts"),
            neuron_annotator=neuron_annotator,
            judge=source(config.evaluation.judge, "evaluation.judge", Question.MAPS),
            refiners={n: sections[n] if n in sections else refiner(n) for n in names},
            metrics=[create("metric", ComponentSpec(name=n), f"metrics[{n!r}]") for n in config.metrics],
            cache=cache or ArtefactCache(),
            device=resolve_device(config.device),
            map_panel=panel.members(annotator, config.panel, "annotator"),
            neuron_panel=panel.members(neuron_annotator, config.panel, "neuron_annotator"),
        )

    @cached_property
    def model_key(self) -> str:
        """The original model's cache key (:func:`~crayon_plugins.run.stages.original.model_key`),
        computed once: it reads the dataset's fingerprint."""
        return model_key(self)

    def controls(self) -> dict[str, str | None]:
        """With ``finetune`` in the run, each other loss-based refiner → ``"finetune"`` when the
        control trains with its optimisation options (epochs, lr, …), so their rows differ by the
        annotations alone, else ``None``; empty without ``finetune``."""
        control = self.refiners.get(CONTROL)
        if control is None:
            return {}
        same = lambda refiner: all(getattr(refiner.params, k) == getattr(control.params, k) for k in Optimisation.model_fields)  # noqa: E731
        return {name: CONTROL if same(r) else None for name, r in self.refiners.items() if name != CONTROL and isinstance(r, FineTuning)}

    def needing(self, *needs: Need) -> list[str]:
        """The refiners that need any of ``needs``."""
        return [name for name, refiner in self.refiners.items() if refiner.needs & set(needs)]

    def needs(self, *needs: Need) -> bool:
        """Whether some refiner needs any of ``needs``."""
        return bool(self.needing(*needs))

    def metrics_need(self, *needs: Need) -> bool:
        """Whether some metric needs any of ``needs``."""
        return any(metric.needs & set(needs) for metric in self.metrics)

    def check_needs(self) -> None:
        """Refuse, before any work, a run whose dataset lacks what a component needs (object masks,
        group labels), naming every component at fault and the settings that would fix it."""
        if problems := unmet_needs(self):
            raise ConfigError("\n".join(problems), "dataset")

    def prepare_shared(self) -> None:
        """Compute and cache what every refiner of this configuration shares: the original model,
        its maps of the training split, its pooled features of every split and, when a refiner
        needs neuron answers, its neurons' concepts. A study's first wave, once per seed."""
        self.check_needs()
        train = load(self, "train")
        model = original_model(self, train).model
        original_maps(self, model, train)
        for name in SPLITS:
            shared_features(self, model, load(self, name), name)
        if self.needs(Need.PREDICTED_MAP_ANSWERS):
            predicted_maps(self, model, train, shared_features(self, model, train, "train"))
        if self.metrics_need(Need.MAPS):
            test = load(self, "test")
            original_test_maps(self, model, test, shared_features(self, model, test, "test"))
        evaluation_splits(self, model)
        if self.needs(Need.NEURON_ANSWERS):
            concepts(self, model, train)

    def run(self, out: str | Path | None = None, include_original: bool = True, observers: Sequence[RunObserver] | None = None) -> Results:
        """Run every stage in data-flow order. ``observers`` default to printing the run and, with
        ``out``, rewriting ``out/results.json`` and saving each method's model under ``out/models``
        after every method. Without ``include_original`` the original model is not evaluated (a study
        evaluates it once per seed). ``results.models`` holds every method's model."""
        self.check_needs()
        if observers is None:
            observers = [ConsoleReport()]
            if out is not None:
                observers += [ResultsFile(out), ModelFiles(Path(out) / "models")]
                observers += [TensorBoardLog(Path(out) / "tensorboard")] if self.config.logging.tensorboard else []
        train, val, test = (load(self, name) for name in SPLITS)
        check_disjoint({"train": train, "val": val, "test": test})
        warn_missing_groups(train, test)
        start = time.perf_counter()
        original = original_model(self, train)
        for observer in observers:
            observer.on_original(self, original)
        model = original.model
        context = refinement_context(self, model, train)
        tested = (test, shared_features(self, model, test, "test"))
        if self.metrics_need(Need.MAPS):
            original_test_maps(self, model, *tested)
        others = evaluation_splits(self, model)
        results = new_results(self, train)
        record_annotations(results, context, {"train": train, "val": val, "test": test, **{n: s for n, (s, _) in others.items()}})
        for observer in observers:
            observer.on_annotations(self, results, context)
        shares = train.group_shares()

        def record(method: str, refined, seconds: float, curve, needs: frozenset[str] = frozenset(), reported: dict | None = None) -> None:
            row = result_row(self, method, refined, seconds, curve, needs, tested, others, shares, reported)
            results.rows.append(row)
            for observer in observers:
                observer.on_method_end(self, results, row, refined)
            results.models[method] = refined if refined is model else refined.cpu()  # the device holds the original and the model in training

        if include_original:
            record("original", model, time.perf_counter() - start, original.curve)
        refused: list[CrayonError] = []
        for name, refiner in self.refiners.items():
            start = time.perf_counter()
            try:
                refined = refine(self, name, model, context)
            except CrayonError as error:  # the other refiners still run; the run ends in an error naming it
                refused.append(error)
                results.rows.append(row := refused_row(name, refiner.needs, error))
                for observer in observers:
                    observer.on_method_end(self, results, row, None)
                continue
            record(name, refined, time.perf_counter() - start, context.selection.curve, refiner.needs, dict(context.details))
        if refused:
            kept = f"; the other methods' results are in {Path(out) / 'results.json'}" if out is not None else ""
            raise RunIncomplete("\n".join(map(str, refused)) + kept, results=results) from refused[0]
        return results


SEEDED_KINDS = ("dataset", "annotation_source")
"""The kinds whose ``seed`` option follows the run's seed unless the configuration pins it."""


def run_seeded(kind: str, spec: ComponentSpec, seed: int, registry: Registry) -> ComponentSpec:
    """``spec`` with the run's ``seed`` as its ``seed`` option, for a dataset or annotation source
    that has one and whose section does not set it: a seed then draws the generated data and the
    simulated annotators' noise as well as the training, so a spread over seeds covers all three.
    Writing ``seed`` in the section pins it."""
    if kind not in SEEDED_KINDS or "seed" in spec.params:
        return spec
    try:
        component = registry.get(kind, spec.name).component
    except CrayonError:
        return spec  # the factory names the unknown component
    if "seed" not in component.Params.model_fields:
        return spec
    return ComponentSpec(name=spec.name, **spec.params, seed=seed)


def control_options(config: RunConfig, names: list[str], registry: Registry) -> dict:
    """The options of ``[refiner.finetune]``, with the optimisation options it leaves unset taken
    from the first loss-based refiner among ``names`` that sets some: the control trains as the
    method it controls (a study passes every refiner of its grid, so each cell's control is the run's)."""
    own = config.refiner.get(CONTROL, {})
    for name in names:
        if name == CONTROL or name not in registry.names("refiner") or not issubclass(registry.get("refiner", name).component, FineTuning):
            continue
        if set_here := {k: v for k, v in config.refiner.get(name, {}).items() if k in Optimisation.model_fields and k not in own}:
            return {**set_here, **own}
    return dict(own)


MISSING = {Need.MASKS: "object masks", Need.GROUPS: "a group attribute (group labels)"}


def unmet_needs(pipeline: Pipeline) -> list[str]:
    """One line per component of the run that needs what its dataset lacks (:data:`MISSING`),
    each naming the settings that would fix it; empty when nothing is missing."""
    dataset, config = pipeline.dataset, pipeline.config
    lacks = {need for need, has in ((Need.MASKS, dataset.has_masks), (Need.GROUPS, dataset.has_groups)) if not has()}
    if not lacks:
        return []
    other = ', or "neuron-metadata" (group labels only)' if Need.GROUPS not in lacks else ', or "neuron-mask" (object masks only)' if Need.MASKS not in lacks else ""
    asked = [
        (pipeline.annotator, "annotator", config.annotator.name, pipeline.needs(*MAP_JUDGEMENTS, *DRAWINGS), 'set [annotator] name = "human" to use people\'s answers (crayon annotate)'),
        (pipeline.neuron_annotator, "neuron_annotator", config.neuron_annotator.name, pipeline.needs(Need.NEURON_ANSWERS), f'set [neuron_annotator] name = "human"{other}'),
        (pipeline.judge, "evaluation.judge", config.evaluation.judge.name, pipeline.metrics_need(Need.MAP_ANSWERS), 'set [evaluation.judge] name = "human" with people\'s answers about the test maps, or drop "reasonability" from metrics'),
    ]
    problems = []
    for source, where, name, used, fix in asked:
        for need in sorted(source.needs & lacks) if used else ():
            problems.append(f"{where}: {name!r} needs {MISSING[need]}, which dataset {config.dataset.name!r} does not have; {fix}")
    for metric in pipeline.metrics:
        for need in sorted(metric.needs & lacks):
            problems.append(f"metrics: {metric.name!r} needs {MISSING[need]}, which dataset {config.dataset.name!r} does not have; drop {metric.name!r} from metrics")
    if Need.GROUPS in lacks:
        for name in pipeline.needing(Need.GROUPS):
            problems.append(f"refiners: {name!r} needs {MISSING[Need.GROUPS]}, which dataset {config.dataset.name!r} does not have; remove it from refiners")
        if config.selection.rule == "val-wga":
            problems.append(f'selection.rule: "val-wga" needs {MISSING[Need.GROUPS]} of the validation split, which dataset {config.dataset.name!r} does not have; set [selection] rule = "val-accuracy" or "last"')
        if "val-wga" in config.selection.also:
            problems.append(f'selection.also: "val-wga" needs {MISSING[Need.GROUPS]} of the validation split, which dataset {config.dataset.name!r} does not have; leave it out')
    return problems
