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
from .config import ComponentSpec, RunConfig
from .data import ImageSet, MapAnnotations, MapsToJudge
from .errors import CrayonError, PluginError
from .model import Classifier
from .progress import console, progress_bar
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


@dataclass
class Pipeline:
    """Every component of a run, built and validated up front, before any expensive work."""

    config: RunConfig
    dataset: components.Dataset
    backbone: components.Backbone
    interpreter: components.Interpreter
    annotator: components.AnnotationSource
    refiners: dict[str, components.Refiner]
    metrics: list[components.Metric]
    cache: ArtifactCache
    device: torch.device

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
            annotator=factory.create_from_spec("annotation_source", config.annotator, "annotator"),
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

    def annotate(self, train: ImageSet, maps: Tensor) -> MapAnnotations:
        items = MapsToJudge(train.ids, train.images, maps, train.labels, train.spurious, train.masks)
        try:
            return self.annotator.annotate_maps(items)
        except CrayonError:
            raise
        except Exception as error:
            raise PluginError(f"annotator {self.config.annotator.name!r} failed: {type(error).__name__}: {error}") from error

    def evaluate(self, model: Classifier, test: ImageSet, train_shares: Tensor) -> dict:
        predicted = predict(model, test.images, self.device).argmax(dim=1)
        found = components.Predictions(test, predicted, train_shares)
        metrics: dict = {}
        for metric in self.metrics:
            metrics.update(metric.compute(found))
        return metrics

    def run(self, out: str | Path | None = None) -> Results:
        """Run everything; with ``out``, ``results.json`` is rewritten after every method."""
        train, test = self.dataset.load("train"), self.dataset.load("test")
        results = Results(dataset=_describe(self.config.dataset, self.dataset), backbone=_describe(self.config.backbone, self.backbone), seed=self.config.seed)
        start = time.perf_counter()
        model, cached = self.original_model(train)
        console.print(f"original model: {'loaded from cache' if cached else 'trained'} ({self.cache.root})")
        maps, _ = self.original_maps(model, train)
        annotations = self.annotate(train, maps)
        results.annotations = annotations.counts()
        console.print("annotations: " + ", ".join(f"{k} {v}" for k, v in results.annotations.items()))
        shares = train.group_shares()

        def record(method: str, refined: Classifier, seconds: float) -> None:
            results.rows.append(ResultRow(method=method, metrics=self.evaluate(refined, test, shares), details={"seconds": round(seconds, 1)}))
            if out is not None:
                results.write(out)

        record("original", model, time.perf_counter() - start)
        context = components.RefinementContext(
            train=train,
            original_maps=maps,
            map_answers=annotations.aligned(train.ids),
            annotations=annotations,
            seed=self.config.seed,
            device=self.device,
        )
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
            record(name, refined, time.perf_counter() - start)
        return results
