"""The plugin API: one hook per component kind.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are hooks below,
made known through an entry point in the group ``crayon``::

    # pyproject.toml of a third-party distribution
    [project.entry-points.crayon]
    my-plugin = "my_package.my_module"

Each hook takes no arguments and returns a mapping ``{component name: component class}``. Names
are global within a kind: two plugins registering one name is an error that names both. The
classes subclass the contracts in :mod:`crayon_plugins.api.components`, declare their options as a
pydantic ``Params`` model, and are constructed by the factories in :mod:`crayon_plugins.factory`
(``create_refiner("crayon-attention", {"w_no": 10})``).

The built-in plugins in ``crayon_plugins.plugins`` and ``crayon_plugins.oracles`` register this
way too, so they double as examples. ``crayon_plugins.testing`` checks a component against the
promises of its kind in one call (``check_refiner(MyRefiner())``); ``docs/plugins.md`` is the guide.
"""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from crayon_plugins.api import components

PROJECT = "crayon"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def crayon_backbones() -> Mapping[str, type[components.Backbone]]:
    """Backbones: build a classifier and expose its last spatial feature map and head.

    Example::

        @hookimpl
        def crayon_backbones():
            return {"timm": TimmBackbone}
    """


@hookspec
def crayon_datasets() -> Mapping[str, type[components.Dataset]]:
    """Datasets: ``load(split)`` gives images, labels, group attributes, optional masks and ids."""


@hookspec
def crayon_interpreters() -> Mapping[str, type[components.Interpreter]]:
    """Interpreters: ``interpreter(model, images, targets)`` gives ``(B, h, w)`` maps in ``[0, 1]``."""


@hookspec
def crayon_concept_extractors() -> Mapping[str, type[components.ConceptExtractor]]:
    """Concept extractors: ``extract(model, train)`` describes each neuron (channel of the last feature
    map) as :class:`~crayon_plugins.model.concepts.NeuronConcepts`: its top-k training images and their patches."""


@hookspec
def crayon_annotation_sources() -> Mapping[str, type[components.AnnotationSource]]:
    """Annotation sources: yes / no / maybe on saliency maps (``annotate_maps``) and relevant /
    irrelevant / maybe on neurons (``annotate_neurons``), from people or simulated annotators. A source
    implements the questions it can answer."""


@hookspec
def crayon_refiners() -> Mapping[str, type[components.Refiner]]:
    """Refiners: ``refine(model, context)`` returns a new, refined classifier; ``needs`` names the
    annotations it uses (``map-answers``, ``neuron-answers``, ``attention-maps``, ``boxes``,
    ``groups``), which the pipeline prepares and ``crayon compare`` lists as its annotation kind.
    A refiner that trains on a loss subclasses :class:`crayon_plugins.api.finetuning.FineTuning` and
    describes only its ``loss``: the loop, validation after every epoch and model selection are
    shared; any other passes ``context.selection`` to :func:`crayon_plugins.training.loop.fit`."""


@hookspec
def crayon_metrics() -> Mapping[str, type[components.Metric]]:
    """Metrics: ``compute(predictions)`` returns named numbers for the results table; a metric that
    ``needs`` ``map-answers`` gets the annotator's judgement of the model's map of each image."""
