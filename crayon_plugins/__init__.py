"""crayon-plugins: correct where image classifiers look, from yes / no judgements of explanations.

The public API: the factories (one per component kind), configuration loading, the pipeline, and the
plugin markers. See :mod:`crayon_plugins.hookspecs` for the plugin API.
"""

from .config import RunConfig, load_config
from .errors import ConfigError, CrayonError, PluginError, UnknownComponentError
from .factory import (
    create_annotation_source,
    create_backbone,
    create_concept_extractor,
    create_dataset,
    create_interpreter,
    create_metric,
    create_refiner,
)
from .hookspecs import hookimpl
from .pipeline import Pipeline

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CrayonError",
    "Pipeline",
    "PluginError",
    "RunConfig",
    "UnknownComponentError",
    "create_annotation_source",
    "create_backbone",
    "create_concept_extractor",
    "create_dataset",
    "create_interpreter",
    "create_metric",
    "create_refiner",
    "hookimpl",
    "load_config",
]
