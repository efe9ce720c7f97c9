"""Stage 5, refine: the refinement context every refiner of the run gets, and each refiner's call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crayon_plugins.api.components import RefinementContext
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import CrayonError, PluginError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.run.stages.annotate import annotate
from crayon_plugins.run.stages.explain import original_maps, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import new_model, selection

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline


CONTROL = "finetune"
"""The control of every loss-based refiner: the same training without the annotations."""


def refinement_context(pipeline: Pipeline, model: Classifier, train: ImageSet) -> RefinementContext:
    """What every refiner of the run gets about the original ``model``: its maps and pooled features
    (stage 3, explain), the annotators' answers under the budget (stage 4, annotate), the validation
    split and the run's model selection. Cached artefacts are loaded, not recomputed."""
    maps = original_maps(pipeline, model, train)
    features = shared_features(pipeline, model, train, "train")
    val = load(pipeline, "val")
    val_features = shared_features(pipeline, model, val, "val")
    answers = annotate(pipeline, model, train, maps, features)
    return RefinementContext.of(
        train,
        maps,
        answers,
        pipeline.config.seed,
        pipeline.device,
        features=features,
        val=val,
        val_features=val_features,
        selection=selection(pipeline, val_features, model),
        build_model=lambda: new_model(pipeline, len(train.class_names)),
    )


def refine(pipeline: Pipeline, name: str, model: Classifier, context: RefinementContext) -> Classifier:
    """The refiner ``name``'s model; an error that is not a :class:`CrayonError` becomes a
    :class:`PluginError` naming its plugin."""
    context.selection.curve = None
    context.details.clear()
    try:
        return pipeline.refiners[name].refine(model, context)
    except CrayonError:
        raise
    except Exception as error:
        plugin = pipeline.registry.get("refiner", name).plugin
        raise PluginError(f"refiner {name!r} (plugin {plugin!r}) failed: {type(error).__name__}: {error}") from error
