"""The plugin authoring kit: contract checks, hypothesis strategies and tiny components.

``check_refiner(MyRefiner())`` (and one check per component kind) runs a component through every
promise its kind makes (:data:`PROMISES`) and raises :class:`ContractError` naming each one broken.
:mod:`crayon_plugins.testing.strategies` draws the framework's data for property-based tests, and
:mod:`crayon_plugins.testing.tiny` builds the millisecond-sized models, image sets and refinement
contexts the checks use. See ``docs/plugins.md``.
"""

from crayon_plugins.testing import strategies
from crayon_plugins.testing.contracts import (
    CHECKS,
    PROMISES,
    BrokenPromise,
    ContractError,
    Report,
    check_annotation_source,
    check_backbone,
    check_concept_extractor,
    check_dataset,
    check_interpreter,
    check_metric,
    check_refiner,
    registered,
)
from crayon_plugins.testing.tiny import TinyBackbone, TinyClassifier, mixed_answers, tiny_answer_files, tiny_context, tiny_image_set, tiny_model

__all__ = [
    "CHECKS",
    "PROMISES",
    "BrokenPromise",
    "ContractError",
    "Report",
    "TinyBackbone",
    "TinyClassifier",
    "check_annotation_source",
    "check_backbone",
    "check_concept_extractor",
    "check_dataset",
    "check_interpreter",
    "check_metric",
    "check_refiner",
    "mixed_answers",
    "registered",
    "tiny_answer_files",
    "strategies",
    "tiny_context",
    "tiny_image_set",
    "tiny_model",
]
