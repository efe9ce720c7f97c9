"""crayon-plugins: correct where image classifiers look, from yes / no judgements of explanations.

The user's API: the factories (one per component kind), configuration loading and the pipeline.
Plugin authors import from :mod:`crayon_plugins.api` (the hooks are documented in
:mod:`crayon_plugins.api.hookspecs`); the kit that checks a plugin is :mod:`crayon_plugins.testing`.
"""

from importlib.metadata import PackageNotFoundError, version

from crayon_plugins.utils import moved

moved.install()  # old module paths keep working, with a warning, for one release

from crayon_plugins.config import RunConfig, load_config
from crayon_plugins.errors import ConfigError, CrayonError, PluginError, UnknownComponentError
from crayon_plugins.factory import (
    create_annotation_source,
    create_backbone,
    create_concept_extractor,
    create_dataset,
    create_interpreter,
    create_metric,
    create_refiner,
)
from crayon_plugins.api.hookspecs import hookimpl
from crayon_plugins.model.saved import load_model
from crayon_plugins.run.pipeline import Pipeline

try:
    __version__ = version("crayon-plugins")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

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
    "load_model",
]
