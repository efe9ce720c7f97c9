"""Stage 5, refine: the refinement context every refiner of the run gets, and each refiner's call."""

from __future__ import annotations

from pathlib import Path

import torch

from crayon_plugins.annotation.records import Annotations, MapsToJudge
from crayon_plugins.api import components
from crayon_plugins.api.components import DRAWINGS, Need
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import CrayonError, PluginError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.run.stages.annotate import Annotate
from crayon_plugins.training.energy import degenerate_yes


class Refine(Annotate):
    def refinement_context(self, model: Classifier, train: ImageSet) -> components.RefinementContext:
        """Maps and, when a refiner needs them, the budget's map answers, neuron answers and
        drawings (cached artefacts are loaded), as every refiner of this run gets them. Without a
        refiner that needs map answers or drawings nobody is asked about maps (a dataset without
        object masks then needs no annotator that uses them)."""
        maps, _ = self.original_maps(model, train)
        features = self.shared_features(model, train, "train")
        val = self.load("val")
        val_features = self.shared_features(model, val, "val")
        annotations, stats, chosen = Annotations((), torch.empty(0, dtype=torch.int64), ()), {}, None
        if self.needs(Need.MAP_ANSWERS, *DRAWINGS):
            chosen = self.chosen_images(model, train, features)
            annotations, stats["maps"] = self.panel_answers("maps", MapsToJudge.of(train, maps), chosen, self.maps_key())
            stats["maps"]["yes_on_zero_maps"] = float(degenerate_yes(maps, annotations.aligned(train.ids)))
        neurons = None
        if self.needs(Need.NEURON_ANSWERS):
            neurons, stats["neurons"] = self.neuron_judgements(model, train, features)
        return components.RefinementContext(
            train=train,
            original_maps=maps,
            map_answers=annotations.aligned(train.ids),
            annotations=annotations,
            seed=self.config.seed,
            device=self.device,
            neurons=neurons,
            drawings=self.drawings(train, maps, chosen) if self.needs(*DRAWINGS) else None,
            features=features,
            val=val,
            val_features=val_features,
            selection=self.selection(val_features),
            build_model=lambda: self.new_model(len(train.class_names)),
            annotation_stats=stats,
        )

    def refine(self, name: str, model: Classifier, context: components.RefinementContext, out: str | Path | None) -> Classifier:
        """The refiner ``name``'s model; an error that is not a :class:`CrayonError` names its plugin
        and says that the results before it were kept (in ``out``)."""
        context.selection.curve = None
        try:
            return self.refiners[name].refine(model, context)
        except CrayonError:
            raise
        except Exception as error:
            plugin = self.registry.get("refiner", name).plugin
            raise PluginError(
                f"refiner {name!r} (plugin {plugin!r}) failed: {type(error).__name__}: {error}. "
                "Results of the methods before it were kept" + (f" in {out}/results.json" if out else "")
            ) from error
