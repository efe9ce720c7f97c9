"""The run: original model → maps → annotations → refiners → metrics, with cached artefacts."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import components, factory
from .budget import image_losses, neuron_taylor_scores, selected
from .cache import ArtifactCache, Check, cache_key
from .compare import annotation_kind
from .config import ComponentSpec, RunConfig
from .data import Annotations, Answer, AttentionMaps, ImageSet, MapsToJudge, NeuronConcepts, NeuronsToJudge, positions
from .energy import degenerate_yes
from .errors import ConfigError, CrayonError, PluginError, TrainingError
from .features import SharedFeatures, backbone_digest, feature_maps
from .model import Classifier
from .oracles import panel
from .oracles.noise import NoiseParams
from .plugins.group_metrics import GroupAccuracy, InDistributionAccuracy
from .progress import console, progress_bar
from .real_annotators import relevant_rates_text
from .registry import default_registry
from .results import ResultRow, Results
from .training import Curve, Selection, fit, non_finite_weights, predict


_SPLITS: dict[str, ImageSet] = {}
"""Splits loaded in this process, by dataset configuration and split name (at most four)."""


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


def validation_metrics(val: ImageSet, predicted: Tensor, train_shares: Tensor) -> dict[str, float]:
    """``wga``, ``mga`` and ``accuracy`` (in-distribution: group accuracies weighted by the training
    set's group shares), which use the validation group labels, and ``plain_accuracy``, which does
    not, of ``predicted`` classes of the validation split."""
    found = components.Predictions(val, predicted, train_shares)
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


def fits_tensor(items: int, ndim: int) -> Check:
    """Check of a cached per-item tensor: floating point, ``ndim`` dimensions, ``items`` rows."""

    def check(value: Any) -> str | None:
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.ndim != ndim or len(value) != items:
            got = f"{value.dtype} of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            return f"expected a float tensor of {ndim} dimensions for {items} items, found {got}"
        return None

    return check


def fits_fields(names: set[str], sized: tuple[str, ...] = ()) -> Check:
    """Check of a cached record: a dict with exactly the keys ``names``, those in ``sized`` of one length."""

    def check(value: Any) -> str | None:
        if not isinstance(value, dict) or set(value) != names:
            return f"expected the fields {sorted(names)}"
        if len({len(value[f]) for f in sized}) > 1:
            return f"{', '.join(sized)} differ in length"
        return None

    return check


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
    judge: components.AnnotationSource
    refiners: dict[str, components.Refiner]
    metrics: list[components.Metric]
    cache: ArtifactCache
    device: torch.device
    map_panel: list[components.AnnotationSource]
    neuron_panel: list[components.AnnotationSource]

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
        """Build the components named in ``config`` (``refiners`` overrides ``config.refiners``);
        errors name the configuration's file."""
        try:
            return cls._build(config, config.refiners if refiners is None else refiners, cache)
        except CrayonError as error:
            raise (error.within(config.source) if config.source else error) from error

    @classmethod
    def _build(cls, config: RunConfig, names: list[str], cache: ArtifactCache | None) -> Pipeline:
        build = lambda n: factory.create_from_spec("refiner", config.refiner_spec(n), f"refiner.{n}")  # noqa: E731
        sections = {n: build(n) for n in config.refiner}  # a misspelled section would otherwise be ignored
        annotator = _annotation_source(config.annotator, "annotator", "maps")
        neuron_annotator = _annotation_source(config.neuron_annotator, "neuron_annotator", "neurons")
        return cls(
            config=config,
            dataset=factory.create_from_spec("dataset", config.dataset, "dataset"),
            backbone=factory.create_from_spec("backbone", config.backbone, "backbone"),
            interpreter=factory.create_from_spec("interpreter", config.interpreter, "interpreter"),
            annotator=annotator,
            concept_extractor=factory.create_from_spec("concept_extractor", config.concepts, "concepts"),
            neuron_annotator=neuron_annotator,
            judge=_annotation_source(config.evaluation.judge, "evaluation.judge", "maps"),
            refiners={n: sections[n] if n in sections else build(n) for n in names},
            metrics=[factory.create_metric(n, where=f"metrics[{n!r}]") for n in config.metrics],
            cache=cache or ArtifactCache(),
            device=resolve_device(config.device),
            map_panel=panel.members(annotator, config.panel, "annotator"),
            neuron_panel=panel.members(neuron_annotator, config.panel, "neuron_annotator"),
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
            selection=c.selection.rule,
            seed=c.seed,
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

    def original_model(self, train: ImageSet) -> tuple[Classifier, bool, Curve]:
        """The ERM model (trained, or loaded from the cache), whether it was cached, and its
        validation curve."""
        model = self.new_model(len(train.class_names))

        def train_erm() -> dict:
            def batch_loss(indices: Tensor) -> Tensor:
                logits = model(train.images[indices].to(self.device))
                return F.cross_entropy(logits, train.labels[indices].to(self.device))

            curve = fit(model, batch_loss, len(train), self.config.training, self.config.seed, "train original (ERM)", selection=self.selection())
            return {"weights": {k: v.cpu() for k, v in model.state_dict().items()}, "curve": curve.as_dict()}

        state, cached = self.cache.get_or_compute("models", self.model_key(), train_erm, fits_model(model))
        model.load_state_dict(state["weights"])
        curve = state["curve"]
        return model.eval(), cached, Curve(curve["rule"], curve["validation"], curve["epoch"])

    def maps_key(self) -> str:
        """Cache key of the original model's maps of the training split."""
        return cache_key(artefact="maps", model=self.model_key(), interpreter=self._key(self.interpreter, self.config.interpreter), split="train")

    def concepts_key(self) -> str:
        """Cache key of the original model's neuron concepts."""
        return cache_key(artefact="concepts", model=self.model_key(), extractor=self._key(self.concept_extractor, self.config.concepts))

    def original_maps(self, model: Classifier, train: ImageSet) -> tuple[Tensor, bool]:
        """The original model's maps of the training set for its true labels (cached)."""
        compute = lambda: explain_all(self.interpreter, model, train.images, train.labels, self.device, "explain original")  # noqa: E731
        return self.cache.get_or_compute("maps", self.maps_key(), compute, fits_tensor(len(train), 3))

    def concepts(self, model: Classifier, train: ImageSet) -> tuple[NeuronConcepts, bool]:
        """The original model's neuron concepts on the training split (cached)."""
        def extract() -> dict:
            found = self._call_plugin("concepts", self.config.concepts, self.concept_extractor.extract, model, train)
            if not isinstance(found, NeuronConcepts):
                raise PluginError(f"concepts {self.config.concepts.name!r} returned {type(found).__name__}, not NeuronConcepts")
            return dict(vars(found))

        check = fits_fields({f.name for f in fields(NeuronConcepts)}, ("neuron_ids", "top_images", "top_activations", "cells", "boxes"))
        state, cached = self.cache.get_or_compute("concepts", self.concepts_key(), extract, check)
        return NeuronConcepts(**state), cached

    def shared_features(self, model: Classifier, split: ImageSet, name: str) -> SharedFeatures:
        """The original model's feature maps of ``split`` (cached), for models that share its backbone."""
        key = cache_key(artefact="features", model=self.model_key(), split=name)
        features, _ = self.cache.get_or_compute("features", key, lambda: feature_maps(model, split.images, self.device), fits_tensor(len(split), 4))
        return SharedFeatures(split.images, features, backbone_digest(model), self.device)


    def _panel_answers(self, question: str, items, chosen: Tensor, about: str) -> tuple[Annotations, dict[str, float]]:
        """Every panel member's answers to ``question`` (``"maps"`` or ``"neurons"``) about ``items``
        (cached, before the budget cut), cut to the ``chosen`` items, aggregated; and statistics:
        agreement, shares of the aggregated answers and, for oracles, their error against the
        noise-free oracle. ``about`` names the items for the cache key."""
        where, spec, members = {
            "maps": ("annotator", self.config.annotator, self.map_panel),
            "neurons": ("neuron_annotator", self.config.neuron_annotator, self.neuron_panel),
        }[question]

        def answers(source: components.AnnotationSource) -> Annotations:
            ask = source.annotate_maps if question == "maps" else source.annotate_neurons
            key = cache_key(artefact="answers", question=question, items=about, source=spec.name, params=source.params.model_dump(mode="json"))

            def compute() -> dict:
                found = self._call_plugin(where, spec, ask, items)
                return {"item_ids": list(found.item_ids), "answers": found.answers, "annotators": list(found.annotators)}

            state, _ = self.cache.get_or_compute("answers", key, compute, fits_fields({"item_ids", "answers", "annotators"}, ("item_ids", "answers", "annotators")))
            return Annotations(tuple(state["item_ids"]), state["answers"], tuple(state["annotators"]))

        ids = items.ids if question == "maps" else items.concepts.neuron_ids
        keep = {ids[i] for i in chosen.tolist()}
        raw = [answers(source) for source in members]
        rows = [(item, answer, who) for found in raw for item, answer, who in zip(found.item_ids, found.answers.tolist(), found.annotators) if item in keep]
        cut = Annotations(tuple(r[0] for r in rows), torch.tensor([r[1] for r in rows], dtype=torch.int64), tuple(r[2] for r in rows))
        aggregated = panel.aggregate(cut, self.config.panel.aggregation)
        stats = {"annotated": float(len(aggregated.item_ids)), **panel.agreement(cut)}
        stats.update({k: v / max(1, len(aggregated.item_ids)) for k, v in aggregated.counts().items()})
        base = members[0]
        if isinstance(base.params, NoiseParams):
            truthful = type(base)(base.params.model_copy(update={"flip_rate": 0.0, "abstain_rate": 0.0, "yes_bias": 0.0, "answer_mix": None}))
            truth = answers(truthful).aligned(ids)[positions(aggregated.item_ids, ids)]
            decided = aggregated.answers != Answer.MAYBE
            wrong = (aggregated.answers != truth) & decided
            stats["error_rate"] = float(wrong.sum() / decided.sum()) if decided.any() else float("nan")
        return aggregated, stats

    def _call_plugin(self, where: str, spec: ComponentSpec, method, *args):
        """``method(*args)``; an error that is not a :class:`CrayonError` becomes a :class:`PluginError`
        naming the configuration field and component."""
        try:
            return method(*args)
        except CrayonError:
            raise
        except Exception as error:
            raise PluginError(f"{where} {spec.name!r} failed: {type(error).__name__}: {error}") from error


    def evaluate(self, model: Classifier, test: SharedFeatures, split: ImageSet, train_shares: Tensor) -> dict:
        """Every metric of ``model`` on ``split`` (``test``: its shared features); with a metric that
        needs ``"map-answers"``, the evaluation judge (not the annotator under study) judges the
        model's maps of ``split`` for its predictions."""
        predicted = test.logits(model).argmax(dim=1)
        answers = None
        if any("map-answers" in metric.needs for metric in self.metrics):
            maps = explain_all(self.interpreter, model, split.images, predicted, self.device, "explain on the test split")
            judged = self._call_plugin("evaluation.judge", self.config.evaluation.judge, self.judge.annotate_maps, MapsToJudge.of(split, maps))
            answers = judged.aligned(split.ids)
        found = components.Predictions(split, predicted, train_shares, answers)
        metrics: dict = {}
        for metric in self.metrics:
            metrics.update(metric.compute(found))
        return metrics

    def _drawings(self, train: ImageSet, maps: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
        """``(regions (N, H, W), drawn (N,))``: the panel's drawings of the ``chosen`` training
        images, a pixel kept where at least half of the annotators who drew that image drew it."""
        size = tuple(train.images.shape[-2:])
        votes = torch.zeros(len(train), *size)
        drawers = torch.zeros(len(train))
        for source in self.map_panel:
            found: AttentionMaps = self._call_plugin("annotator", self.config.annotator, source.annotate_attention, MapsToJudge.of(train, maps))
            regions, drawn = found.aligned(train.ids, size)
            votes += regions
            drawers += drawn
        keep = torch.zeros(len(train), dtype=torch.bool)
        keep[chosen] = True
        regions = (votes >= drawers.clamp(min=1).view(-1, 1, 1) / 2) & (drawers > 0).view(-1, 1, 1) & keep.view(-1, 1, 1)
        return regions, regions.flatten(1).any(dim=1)

    def refinement_context(self, model: Classifier, train: ImageSet) -> components.RefinementContext:
        """Maps, the budget's map answers and, when a refiner needs them, concepts, neuron answers and
        drawings (cached artefacts are loaded), as every refiner of this run gets them."""
        maps, _ = self.original_maps(model, train)
        features = self.shared_features(model, train, "train")
        val = self.load("val")
        val_features = self.shared_features(model, val, "val")
        budget, seed = self.config.budget, self.config.seed
        chosen = selected(len(train), budget, seed, lambda: image_losses(model, features, train.labels))
        annotations, map_stats = self._panel_answers("maps", MapsToJudge.of(train, maps), chosen, self.maps_key())
        map_stats["yes_on_zero_maps"] = float(degenerate_yes(maps, annotations.aligned(train.ids)))
        stats = {"maps": map_stats}
        concepts = neuron_annotations = neuron_answers = attention = drawn = None
        if self.needs("neuron-answers"):
            concepts, _ = self.concepts(model, train)
            neurons = selected(len(concepts), budget, seed, lambda: neuron_taylor_scores(model, features, train.labels))
            neuron_annotations, stats["neurons"] = self._panel_answers("neurons", NeuronsToJudge(concepts, train), neurons, self.concepts_key())
            neuron_answers = neuron_annotations.aligned(concepts.neuron_ids)
        if self.needs("attention-maps", "boxes"):
            attention, drawn = self._drawings(train, maps, chosen)
        return components.RefinementContext(
            train=train,
            original_maps=maps,
            map_answers=annotations.aligned(train.ids),
            annotations=annotations,
            seed=seed,
            device=self.device,
            concepts=concepts,
            neuron_answers=neuron_answers,
            neuron_annotations=neuron_annotations,
            neuron_annotator=_describe(self.config.neuron_annotator, self.neuron_annotator),
            attention=attention,
            attention_drawn=drawn,
            features=features,
            val=val,
            val_features=val_features,
            selection=self.selection(val_features),
            build_model=lambda: self.new_model(len(train.class_names)),
            annotation_stats=stats,
        )

    def load(self, split: str) -> ImageSet:
        """A split of the dataset, loaded once per process (a study's cells share it)."""
        key = cache_key(dataset=self._key(self.dataset, self.config.dataset), split=split)
        if key not in _SPLITS:
            if len(_SPLITS) >= 4:
                _SPLITS.pop(next(iter(_SPLITS)))
            _SPLITS[key] = self.dataset.load(split)
        return _SPLITS[key]

    def run(self, out: str | Path | None = None, include_original: bool = True) -> Results:
        """Run everything; with ``out``, ``results.json`` is rewritten after every method. Without
        ``include_original`` the original model is not evaluated (a study evaluates it once per seed)."""
        train, test = self.load("train"), self.load("test")
        for name, split, consequence in (("training", train, "refiners cannot learn them"), ("test", test, "WGA and MGA are taken over the groups it has")):
            if missing := split.missing_groups():
                console.print(f"warning: the {name} split has no item of group(s) {', '.join(missing)}: {consequence}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        results = Results(dataset=_describe(self.config.dataset, self.dataset), backbone=_describe(self.config.backbone, self.backbone), seed=self.config.seed)
        if any("map-answers" in metric.needs for metric in self.metrics):
            results.judge = _describe(self.config.evaluation.judge, self.judge)
        start = time.perf_counter()
        model, cached, curve = self.original_model(train)
        console.print(f"original model: {'loaded from cache' if cached else 'trained'} ({self.cache.root})")
        context = self.refinement_context(model, train)
        test_features = self.shared_features(model, test, "test")
        results.annotations = context.annotations.counts()
        results.annotation_stats = context.annotation_stats
        console.print("annotations: " + ", ".join(f"{k} {v}" for k, v in results.annotations.items()))
        if context.neuron_annotations is not None:
            counts = context.neuron_annotations.counts()
            results.neuron_annotations = {"relevant": counts["yes"], "irrelevant": counts["no"], "maybe": counts["maybe"]}
            console.print(
                f"neurons ({self.config.neuron_annotator.name}): "
                + ", ".join(f"{k} {v}" for k, v in results.neuron_annotations.items())
                + f"; relevant {100 * counts['yes'] / len(context.concepts):.1f}%, real annotators: {relevant_rates_text()}"
            )
        panel = self.config.panel
        if panel.size > 1:
            for question, stats in context.annotation_stats.items():
                console.print(
                    f"panel of {panel.size} on {question} ({panel.aggregation}): Cohen's κ {stats['cohen_kappa']:.3f}, "
                    f"Fleiss' κ {stats['fleiss_kappa']:.3f}, Krippendorff's α {stats['krippendorff_alpha']:.3f}"
                    + (f", aggregated yes / no unlike the noise-free oracle {100 * stats['error_rate']:.1f}%" if "error_rate" in stats else "")
                )
        shares = train.group_shares()

        def record(method: str, refined: Classifier, seconds: float, selected: Curve | None, needs: frozenset[str] = frozenset()) -> None:
            if bad := non_finite_weights(refined):
                raise TrainingError(f"{method}: weight {bad!r} of the model is not finite; it is not reported")
            details = {
                "seconds": round(seconds, 1),
                "neurons_pruned": int((refined.neuron_mask == 0).sum()),
                "annotation": annotation_kind(needs),
            }
            selection = selected.as_dict() if selected is not None else {"rule": self.config.selection.rule, "epoch": None, "validation": []}
            metrics = self.evaluate(refined, test_features, test, shares)
            results.rows.append(ResultRow(method=method, metrics=metrics, details=details, selection=[{"seed": self.config.seed, **selection}]))
            if out is not None:
                results.write(out)

        if include_original:
            record("original", model, time.perf_counter() - start, curve)
        for name, refiner in self.refiners.items():
            start = time.perf_counter()
            context.selection.curve = None
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
            record(name, refined, time.perf_counter() - start, context.selection.curve, refiner.needs)
        return results
