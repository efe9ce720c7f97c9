"""Stage 4, annotate: the panel's answers about the original model's maps and neurons, and its
drawings, for the items the budget chooses; with agreement and error statistics."""

from __future__ import annotations

import torch
from torch import Tensor

from crayon_plugins.annotation.budget import image_losses, neuron_taylor_scores, selected
from crayon_plugins.annotation.records import Annotations, Answer, AttentionMaps, MapsToJudge, NeuronsToJudge, positions
from crayon_plugins.api import components
from crayon_plugins.api.components import DrawnRegions, NeuronJudgements
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures
from crayon_plugins.annotation import panel
from crayon_plugins.oracles.noise import NoiseParams, noise_free
from crayon_plugins.run.cache import cache_key
from crayon_plugins.run.stages.explain import Explain, fits_fields


def describe(spec, component: components.Component) -> str:
    """``name(option=value, …)``, as results and errors name a configured component."""
    options = ", ".join(f"{k}={v}" for k, v in component.params.model_dump().items())
    return f"{spec.name}({options})" if options else spec.name


class Annotate(Explain):
    def panel_answers(self, question: str, items: MapsToJudge | NeuronsToJudge, chosen: Tensor, about: str) -> tuple[Annotations, dict[str, float]]:
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
            key = cache_key(artefact="answers", question=question, items=about, source=spec.name, params=source.params.model_dump(mode="json"), content=source.fingerprint())

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
            truthful = noise_free(base)
            truth = answers(truthful).aligned(ids)[positions(aggregated.item_ids, ids)]
            decided = aggregated.answers != Answer.MAYBE
            wrong = (aggregated.answers != truth) & decided
            stats["error_rate"] = float(wrong.sum() / decided.sum()) if decided.any() else float("nan")
        return aggregated, stats

    def chosen_images(self, model: Classifier, train: ImageSet, features: SharedFeatures) -> Tensor:
        """Indices of the training images the budget has annotated."""
        return selected(len(train), self.config.budget, self.config.seed, lambda: image_losses(model, features, train.labels))

    def neuron_judgements(self, model: Classifier, train: ImageSet, features: SharedFeatures) -> tuple[NeuronJudgements, dict[str, float]]:
        """The concepts of the original model's neurons and the panel's answers about those the
        budget chooses, with their statistics."""
        concepts, _ = self.concepts(model, train)
        chosen = selected(len(concepts), self.config.budget, self.config.seed, lambda: neuron_taylor_scores(model, features, train.labels))
        annotations, stats = self.panel_answers("neurons", NeuronsToJudge(concepts, train), chosen, self.concepts_key())
        judged = NeuronJudgements(concepts, annotations.aligned(concepts.neuron_ids), annotations, describe(self.config.neuron_annotator, self.neuron_annotator))
        return judged, stats

    def drawings(self, train: ImageSet, maps: Tensor, chosen: Tensor) -> DrawnRegions:
        """The panel's drawings of the ``chosen`` training images, a pixel kept where at least half
        of the annotators who drew that image drew it."""
        size = train.image_size
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
        return DrawnRegions(regions, regions.flatten(1).any(dim=1))
