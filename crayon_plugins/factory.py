"""One factory per component kind: the only way the pipeline builds components from configuration.

``create_refiner("crayon-attention", {"w_no": 10.0})`` looks the name up in the plugin registry,
validates the options against the component's ``Params`` model, and constructs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from crayon_plugins.api import components
from crayon_plugins.config import ComponentSpec, describe_validation_error, reject_non_finite
from crayon_plugins.errors import ConfigError, CrayonError, PluginError
from crayon_plugins.registry import Registry, default_registry

C = TypeVar("C", bound=components.Component)


def create(
    kind: str,
    name: str,
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    where: str | None = None,
    registry: Registry | None = None,
) -> components.Component:
    """Build the ``kind`` component registered as ``name`` with ``params``.

    Args:
        where: the configuration field the options came from, named in errors (default: ``kind``).
    """
    where = where or kind.replace("_", " ")
    try:
        registration = (registry or default_registry()).get(kind, name)
    except CrayonError as error:
        raise type(error)(f"{where}: {error}", where) from None
    cls = registration.component
    if isinstance(params, cls.Params):
        validated = params
    else:
        raw = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
        reject_non_finite(raw, f"{kind.replace('_', ' ')} {name!r}", where, field=where)
        try:
            validated = cls.Params.model_validate(raw)
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, f"{kind.replace('_', ' ')} {name!r}", where), where) from None
    component = cls.__new__(cls)
    component.name = name  # known from the start, so the constructor's own errors can name it
    try:
        component.__init__(validated)
    except CrayonError:
        raise
    except Exception as error:
        raise PluginError(
            f"{kind.replace('_', ' ')} {name!r} from plugin {registration.plugin!r} ({registration.module}) "
            f"failed to construct: {type(error).__name__}: {error}"
        ) from error
    return component


def create_from_spec(kind: str, spec: ComponentSpec, where: str, registry: Registry | None = None) -> Any:
    """Build a component from a configuration section (``name`` plus options)."""
    return create(kind, spec.name, spec.params, where=where, registry=registry)


def create_backbone(name: str, params: Mapping[str, Any] | None = None, **kw: Any) -> components.Backbone:
    return create("backbone", name, params, **kw)  # type: ignore[return-value]


def create_dataset(name: str, params: Mapping[str, Any] | None = None, **kw: Any) -> components.Dataset:
    return create("dataset", name, params, **kw)  # type: ignore[return-value]


def create_interpreter(name: str, params: Mapping[str, Any] | None = None, **kw: Any) -> components.Interpreter:
    return create("interpreter", name, params, **kw)  # type: ignore[return-value]


def create_concept_extractor(
    name: str, params: Mapping[str, Any] | None = None, **kw: Any
) -> components.ConceptExtractor:
    return create("concept_extractor", name, params, **kw)  # type: ignore[return-value]


def create_annotation_source(
    name: str, params: Mapping[str, Any] | None = None, **kw: Any
) -> components.AnnotationSource:
    return create("annotation_source", name, params, **kw)  # type: ignore[return-value]


def create_refiner(name: str, params: Mapping[str, Any] | None = None, **kw: Any) -> components.Refiner:
    return create("refiner", name, params, **kw)  # type: ignore[return-value]


def create_metric(name: str, params: Mapping[str, Any] | None = None, **kw: Any) -> components.Metric:
    return create("metric", name, params, **kw)  # type: ignore[return-value]
