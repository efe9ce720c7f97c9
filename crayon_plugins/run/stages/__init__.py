"""The stages of a run, in data-flow order, one module each.

:class:`~crayon_plugins.run.pipeline.Pipeline` holds a run's components (built from configuration) and
inherits one class per stage, so its methods read in the order the data flows:

1. :mod:`.load` — the dataset's splits, streamed with the run's loading options;
2. :mod:`.original` — the original model (ERM, cached; or the user's checkpoint) and model selection;
3. :mod:`.explain` — its saliency maps, pooled features and neuron concepts (cached);
4. :mod:`.annotate` — the panel's answers about maps and neurons, and its drawings, under the budget;
5. :mod:`.refine` — the refinement context and each refiner;
6. :mod:`.evaluate` — every metric of a model, on the test split and any extra evaluation splits;
7. :mod:`.report` — what the run prints and writes to ``results.json``.

Each stage uses the components, configuration, cache and device of the pipeline (declared in
:class:`Stage`) and the stages before it, so a test can run one stage of a tiny pipeline alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crayon_plugins.api import components
from crayon_plugins.run.cache import ArtifactCache
from crayon_plugins.config import ComponentSpec, RunConfig
from crayon_plugins.errors import call_plugin
from crayon_plugins.registry import Registry


@dataclass
class Stage:
    """What every stage may use: the run's configuration, components, cache and device."""

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
    cache: ArtifactCache
    device: torch.device
    map_panel: list[components.AnnotationSource]
    neuron_panel: list[components.AnnotationSource]

    def _key(self, component: components.Component, spec: ComponentSpec) -> dict:
        """A component's part of a cache key: its name and validated options."""
        return {"name": spec.name, "params": component.params.model_dump(mode="json")}

    def _call_plugin(self, where: str, spec: ComponentSpec, method, *args):
        return call_plugin(f"{where} {spec.name!r}", method, *args)

    def needing(self, *needs: components.Need) -> list[str]:
        """The refiners that need any of ``needs``."""
        return [name for name, refiner in self.refiners.items() if refiner.needs & set(needs)]

    def needs(self, *needs: components.Need) -> bool:
        return bool(self.needing(*needs))

    def metrics_need(self, need: components.Need) -> bool:
        return any(need in metric.needs for metric in self.metrics)
