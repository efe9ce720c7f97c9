"""The run: original model → maps → annotations → refiners → metrics, with cached artefacts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from . import components, factory
from .cache import ArtifactCache, cache_key
from .compare import annotation_kind
from .config import ComponentSpec, RunConfig
from .data import Annotations, ImageSet, MapsToJudge, NeuronConcepts, NeuronsToJudge
from .errors import ConfigError, CrayonError, PluginError
from .model import Classifier
from .progress import console, progress_bar
from .real_annotators import relevant_rates_text
from .registry import default_registry
from .results import ResultRow, Results
from .training import fit, predict


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrayonError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def explain_all(
    interpreter: components.Interpreter,
    model: Classifier,
    images: Tensor,
    targets: Tensor,
    device: torch.device,
    description: str,
    batch_size: int = 128,
) -> Tensor:
    """Maps of ``model`` (eval mode) for every image, on CPU, with a progress bar."""
    model.eval()
    chunks = []
    with progress_bar(description, -(-len(images) // batch_size)) as advance:
        for batch, target in zip(images.split(batch_size), targets.split(batch_size)):
            chunks.append(interpreter(model, batch.to(device), target.to(device)).cpu())
            advance()
    return torch.cat(chunks)


def _describe(spec: ComponentSpec, component: components.Component) -> str:
    options = ", ".join(f"{k}={v}" for k, v in component.params.model_dump().items())
    return f"{spec.name}({options})" if options else spec.name


def _annotation_source(spec: ComponentSpec, where: str, question: str) -> components.AnnotationSource:
    """Build the source and check it answers ``question`` (``"maps"`` or ``"neurons"``)."""
    source = factory.create_from_spec("annotation_source", spec, where)
    if question not in source.judges():
        can = " and ".join(sorted(source.judges())) or "nothing"
        raise ConfigError(f"{where}: {spec.name!r} does not judge {question} (it judges {can})")
    return source


@dataclass
class Pipeline:
    """Every component of a run, built and validated up front, before any expensive work."""

    config: RunConfig
    dataset: components.Dataset
    backbone: components.Backbone
    interpreter: components.Interpreter
    annotator: components.AnnotationSource
    concept_extractor: components.ConceptExtractor
    neuron_annotator: components.AnnotationSource
    refiners: dict[str, components.Refiner]
    metrics: list[components.Metric]
    cache: ArtifactCache
    device: torch.device

    def __post_init__(self) -> None:
        if self.needs("attention-maps", "boxes") and "attention" not in self.annotator.judges():
            raise ConfigError(f"annotator: {self.config.annotator.name!r} does not draw attention maps, which refiners {self.needing('attention-maps', 'boxes')} need")

    def needing(self, *needs: str) -> list[str]:
        """The refiners that need any of ``needs``."""
        return [name for name, refiner in self.refiners.items() if refiner.needs & set(needs)]

    def needs(self, *needs: str) -> bool:
        return bool(self.needing(*needs))

    @classmethod
    def from_config(
        cls, config: RunConfig, refiners: list[str] | None = None, cache: ArtifactCache | None = None
    ) -> Pipeline:
        """Build the components named in ``config`` (``refiners`` overrides ``config.refiners``)."""
        names = config.refiners if refiners is None else refiners
        return cls(
            config=config,
            dataset=factory.create_from_spec("dataset", config.dataset, "dataset"),
            backbone=factory.create_from_spec("backbone", config.backbone, "backbone"),
            interpreter=factory.create_from_spec("interpreter", config.interpreter, "interpreter"),
            annotator=_annotation_source(config.annotator, "annotator", "maps"),
            concept_extractor=factory.create_from_spec("concept_extractor", config.concepts, "concepts"),
            neuron_annotator=_annotation_source(config.neuron_annotator, "neuron_annotator", "neurons"),
            refiners={n: factory.create_from_spec("refiner", config.refiner_spec(n), f"refiner.{n}") for n in names},
            metrics=[factory.create_metric(n, where=f"metrics[{n!r}]") for n in config.metrics],
            cache=cache or ArtifactCache(),
            device=resolve_device(config.device),
        )

    def _key(self, component: components.Component, spec: ComponentSpec) -> dict:
        return {"name": spec.name, "params": component.params.model_dump(mode="json")}

    def model_key(self) -> str:
        """Cache key of the original model: data, backbone, training and seed."""
        c = self.config
        return cache_key(
            artefact="original-model",
            dataset=self._key(self.dataset, c.dataset),
            backbone=self._key(self.backbone, c.backbone),
            training=c.training.model_dump(),
            seed=c.seed,
        )

    def original_model(self, train: ImageSet) -> tuple[Classifier, bool]:
        """The ERM model (trained, or loaded from the cache) and whether it was cached."""
        torch.manual_seed(self.config.seed)  # the initial weights depend on the seed only
        model = self.backbone.build(len(train.class_names)).to(self.device)

        def train_erm() -> dict:
            def batch_loss(indices: Tensor) -> Tensor:
                logits = model(train.images[indices].to(self.device))
                return F.cross_entropy(logits, train.labels[indices].to(self.device))

            fit(model, batch_loss, len(train), self.config.training, self.config.seed, "train original (ERM)")
            return {k: v.cpu() for k, v in model.state_dict().items()}

        state, cached = self.cache.get_or_compute("models", self.model_key(), train_erm)
        model.load_state_dict(state)
        return model.eval(), cached

    def original_maps(self, model: Classifier, train: ImageSet) -> tuple[Tensor, bool]:
        """The original model's maps of the training set for its true labels (cached)."""
        key = cache_key(
            artefact="maps",
            model=self.model_key(),
            interpreter=self._key(self.interpreter, self.config.interpreter),
            split="train",
        )
        compute = lambda: explain_all(self.interpreter, model, train.images, train.labels, self.device, "explain original")  # noqa: E731
        return self.cache.get_or_compute("maps", key, compute)

    def concepts(self, model: Classifier, train: ImageSet) -> tuple[NeuronConcepts, bool]:
        """The original model's neuron concepts on the training split (cached)."""
        key = cache_key(
            artefact="concepts",
            model=self.model_key(),
            extractor=self._key(self.concept_extractor, self.config.concepts),
        )

        def extract() -> dict:
            found = self._call_plugin("concepts", self.config.concepts, self.concept_extractor.extract, model, train)
            if not isinstance(found, NeuronConcepts):
                raise PluginError(f"concepts {self.config.concepts.name!r} returned {type(found).__name__}, not NeuronConcepts")
            return dict(vars(found))

        state, cached = self.cache.get_or_compute("concepts", key, extract)
        return NeuronConcepts(**state), cached

    def annotate(self, split: ImageSet, maps: Tensor) -> Annotations:
        """The annotator's answers about ``maps`` of the images of ``split``."""
        return self._call_plugin("annotator", self.config.annotator, self.annotator.annotate_maps, MapsToJudge.of(split, maps))

    def annotate_neurons(self, train: ImageSet, concepts: NeuronConcepts) -> Annotations:
        """The neuron annotator's relevant / irrelevant / maybe answers about each neuron."""
        items = NeuronsToJudge(concepts, train)
        return self._call_plugin("neuron_annotator", self.config.neuron_annotator, self.neuron_annotator.annotate_neurons, items)

    def _call_plugin(self, where: str, spec: ComponentSpec, method, *args):
        """``method(*args)``; an error that is not a :class:`CrayonError` becomes a :class:`PluginError`
        naming the configuration field and component."""
        try:
            return method(*args)
        except CrayonError:
            raise
        except Exception as error:
            raise PluginError(f"{where} {spec.name!r} failed: {type(error).__name__}: {error}") from error


    def evaluate(self, model: Classifier, test: ImageSet, train_shares: Tensor) -> dict:
        """Every metric of ``model`` on ``test``; with a metric that needs ``"map-answers"``, the
        annotator judges the model's maps of ``test`` for its predictions (seeded like the training's)."""
        predicted = predict(model, test.images, self.device).argmax(dim=1)
        answers = None
        if any("map-answers" in metric.needs for metric in self.metrics):
            maps = explain_all(self.interpreter, model, test.images, predicted, self.device, "explain on the test split")
            answers = self.annotate(test, maps).aligned(test.ids)
        found = components.Predictions(test, predicted, train_shares, answers)
        metrics: dict = {}
        for metric in self.metrics:
            metrics.update(metric.compute(found))
        return metrics

    def refinement_context(self, model: Classifier, train: ImageSet) -> components.RefinementContext:
        """Maps, map answers and, when a refiner needs them, concepts and neuron answers (cached
        artefacts are loaded), as every refiner of this run gets them."""
        maps, _ = self.original_maps(model, train)
        annotations = self.annotate(train, maps)
        concepts = neuron_annotations = neuron_answers = attention = drawn = None
        if self.needs("neuron-answers"):
            concepts, _ = self.concepts(model, train)
            neuron_annotations = self.annotate_neurons(train, concepts)
            neuron_answers = neuron_annotations.aligned(concepts.neuron_ids)
        if self.needs("attention-maps", "boxes"):
            drawings = self._call_plugin("annotator", self.config.annotator, self.annotator.annotate_attention, MapsToJudge.of(train, maps))
            attention, drawn = drawings.aligned(train.ids, tuple(train.images.shape[-2:]))
        return components.RefinementContext(
            train=train,
            original_maps=maps,
            map_answers=annotations.aligned(train.ids),
            annotations=annotations,
            seed=self.config.seed,
            device=self.device,
            concepts=concepts,
            neuron_answers=neuron_answers,
            neuron_annotations=neuron_annotations,
            attention=attention,
            attention_drawn=drawn,
        )

    def run(self, out: str | Path | None = None) -> Results:
        """Run everything; with ``out``, ``results.json`` is rewritten after every method."""
        train, test = self.dataset.load("train"), self.dataset.load("test")
        results = Results(dataset=_describe(self.config.dataset, self.dataset), backbone=_describe(self.config.backbone, self.backbone), seed=self.config.seed)
        start = time.perf_counter()
        model, cached = self.original_model(train)
        console.print(f"original model: {'loaded from cache' if cached else 'trained'} ({self.cache.root})")
        context = self.refinement_context(model, train)
        results.annotations = context.annotations.counts()
        console.print("annotations: " + ", ".join(f"{k} {v}" for k, v in results.annotations.items()))
        if context.neuron_annotations is not None:
            counts = context.neuron_annotations.counts()
            results.neuron_annotations = {"relevant": counts["yes"], "irrelevant": counts["no"], "maybe": counts["maybe"]}
            console.print(
                f"neurons ({self.config.neuron_annotator.name}): "
                + ", ".join(f"{k} {v}" for k, v in results.neuron_annotations.items())
                + f"; relevant {100 * counts['yes'] / len(context.concepts):.1f}%, real annotators: {relevant_rates_text()}"
            )
        shares = train.group_shares()

        def record(method: str, refined: Classifier, seconds: float, needs: frozenset[str] = frozenset()) -> None:
            details = {
                "seconds": round(seconds, 1),
                "neurons_pruned": int((refined.neuron_mask == 0).sum()),
                "annotation": annotation_kind(needs),
            }
            results.rows.append(ResultRow(method=method, metrics=self.evaluate(refined, test, shares), details=details))
            if out is not None:
                results.write(out)

        record("original", model, time.perf_counter() - start)
        for name, refiner in self.refiners.items():
            start = time.perf_counter()
            try:
                refined = refiner.refine(model, context)
            except CrayonError:
                raise
            except Exception as error:
                plugin = default_registry().get("refiner", name).plugin
                raise PluginError(
                    f"refiner {name!r} (plugin {plugin!r}) failed: {type(error).__name__}: {error}. "
                    "Results of the methods before it were kept" + (f" in {out}/results.json" if out else "")
                ) from error
            record(name, refined, time.perf_counter() - start, refiner.needs)
        return results
