"""Plugin discovery: the component kinds (:data:`KINDS`), the built-in plugins, and third parties'
entry points in the group ``crayon`` → one registry per component kind.

Built-ins are found by walking :data:`BUILTIN_PACKAGES` (as pytest lists its ``default_plugins``):
each module is a plugin of its own, named by its module path, so a broken one stays isolated; the
ones a run cannot live without (:data:`ESSENTIAL`) are an error when they break. Third-party
distributions register through entry points. A plugin that fails to import, fails pluggy's
validation or returns something that is not a mapping of names to components is recorded as
*broken* and skipped: the other plugins keep working. A name registered by two plugins is a
*conflict*: asking for it is an error that names both.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata as metadata
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pluggy

from crayon_plugins.api import components, hookspecs
from crayon_plugins.errors import PluginError, UnknownComponentError

ENTRY_POINT_GROUP = hookspecs.PROJECT
"""The entry-point group third-party distributions register their plugin modules in."""


@dataclass(frozen=True)
class Kind:
    """One component kind: the contract its components subclass, the hook that registers them, its
    factory (in :mod:`crayon_plugins.factory`) and its contract check (in :mod:`crayon_plugins.testing`)."""

    name: str
    contract: type[components.Component]
    hook: str
    factory: str
    check: str


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("backbone", components.Backbone, "crayon_backbones", "create_backbone", "check_backbone"),
        Kind("dataset", components.Dataset, "crayon_datasets", "create_dataset", "check_dataset"),
        Kind("interpreter", components.Interpreter, "crayon_interpreters", "create_interpreter", "check_interpreter"),
        Kind("concept_extractor", components.ConceptExtractor, "crayon_concept_extractors", "create_concept_extractor", "check_concept_extractor"),
        Kind("annotation_source", components.AnnotationSource, "crayon_annotation_sources", "create_annotation_source", "check_annotation_source"),
        Kind("refiner", components.Refiner, "crayon_refiners", "create_refiner", "check_refiner"),
        Kind("metric", components.Metric, "crayon_metrics", "create_metric", "check_metric"),
    )
}
"""The component kinds, in the order a run uses them; the one table every other list derives from."""

BUILTIN_PACKAGES = ("crayon_plugins.plugins", "crayon_plugins.oracles")
"""The packages whose modules are the built-in plugins (``plugins/`` and ``oracles/``)."""

ESSENTIAL = (
    "crayon_plugins.plugins.interpreters.captum",
    "crayon_plugins.plugins.interpreters.gradcam",
    "crayon_plugins.plugins.metrics.groups",
    "crayon_plugins.oracles.saliency",
)
"""Built-ins a run cannot live without (the default interpreter and judge, the differentiable
Grad-CAM, the group metrics): if one of them breaks, the registry is an error, not a warning."""


def builtin_modules() -> list[str]:
    """The modules of :data:`BUILTIN_PACKAGES`, sorted (packages themselves and ``examples`` left out)."""
    found = []
    for package in BUILTIN_PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not info.ispkg and ".examples" not in info.name and not info.name.rsplit(".", 1)[-1].startswith("_"):
                found.append(info.name)
    return sorted(found)


@dataclass(frozen=True)
class Registration:
    """One component: its kind, name, class and the plugin that registered it."""

    kind: str
    name: str
    component: type
    plugin: str

    @property
    def module(self) -> str:
        return self.component.__module__


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be used, with where it came from (its entry point, or its built-in
    module) and why."""

    plugin: str
    entry_point: str
    error: str

    def describe(self) -> str:
        origin = self.entry_point if self.entry_point.startswith("built-in") else f"entry point {self.entry_point}"
        return f"plugin {self.plugin!r} ({origin}) is broken: {self.error}"


@dataclass
class Registry:
    """Every registered component, by kind and name, plus what went wrong while loading plugins."""

    components: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in KINDS})
    conflicts: dict[tuple[str, str], list[Registration]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def add(self, registration: Registration) -> None:
        key = (registration.kind, registration.name)
        if key in self.conflicts:
            self.conflicts[key].append(registration)
            return
        existing = self.components[registration.kind].pop(registration.name, None)
        if existing is None:
            self.components[registration.kind][registration.name] = registration
        else:
            self.conflicts[key] = [existing, registration]

    def names(self, kind: str) -> list[str]:
        """Sorted names of the usable components of ``kind``."""
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Registration:
        """The registration of ``name``; a clear error if it is unknown or ambiguous."""
        if kind not in self.components:
            raise UnknownComponentError(f"unknown component kind {kind!r}; kinds: {', '.join(self.components)}")
        if (kind, name) in self.conflicts:
            owners = " and ".join(f"plugin {r.plugin!r} ({r.module})" for r in self.conflicts[kind, name])
            raise PluginError(
                f"{kind} {name!r} is registered by both {owners}; uninstall or rename one of them"
            )
        try:
            return self.components[kind][name]
        except KeyError:
            available = self.names(kind)
            hint = difflib.get_close_matches(name, available, n=1)
            message = f"unknown {kind.replace('_', ' ')} {name!r}"
            message += f" (did you mean {hint[0]!r}?)" if hint else ""
            message += f"; available: {', '.join(available) or 'none'}"
            if self.broken:
                message += ". Plugins that failed to load may have provided it: " + "; ".join(
                    b.describe() for b in self.broken
                )
            raise UnknownComponentError(message) from None

    def all(self) -> list[Registration]:
        """Every usable registration, sorted by kind then name."""
        return [r for kind in self.components for r in sorted(self.components[kind].values(), key=lambda r: r.name)]


def _entry_point_label(entry_point: metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    origin = f" from {dist.name}" if dist is not None else ""
    return f"'{entry_point.name} = {entry_point.value}'{origin}"


def build_registry(
    entry_points: Iterable[metadata.EntryPoint] = (), extra_plugins: Mapping[str, object] | None = None, builtins: bool = False
) -> Registry:
    """Load plugins from the built-in modules (with ``builtins``), ``entry_points`` and
    ``extra_plugins`` (name → module or object).

    Raises:
        PluginError: an :data:`ESSENTIAL` built-in is broken.
    """
    registry = Registry()
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    labels: dict[str, str] = {}

    def register(name: str, load, label: str) -> None:
        labels[name] = label
        try:
            manager.register(load(), name=name)
        except Exception as error:  # noqa: BLE001 - any failure of a plugin is reported, not raised
            registry.broken.append(BrokenPlugin(name, label, f"{type(error).__name__}: {error}"))

    for module in builtin_modules() if builtins else ():
        register(module, lambda module=module: importlib.import_module(module), f"built-in module {module}")
    for entry_point in entry_points:
        register(entry_point.name, entry_point.load, _entry_point_label(entry_point))
    for name, plugin in (extra_plugins or {}).items():
        register(name, lambda plugin=plugin: plugin, f"(registered directly: {plugin!r})")
    while True:  # hook implementations whose names match no hook (typos) make a plugin broken
        try:
            manager.check_pending()
            break
        except pluggy.PluginValidationError as error:
            plugin_name = manager.get_name(error.plugin) or repr(error.plugin)
            manager.unregister(error.plugin)
            registry.broken.append(BrokenPlugin(plugin_name, labels.get(plugin_name, "?"), str(error)))

    for kind in KINDS.values():
        hook_name, contract = kind.hook, kind.contract
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            label = labels.get(impl.plugin_name, "?")
            try:
                provided = impl.function()
                if not isinstance(provided, Mapping):
                    raise TypeError(f"{hook_name}() returned {type(provided).__name__}, not a mapping of names")
                for name, component in provided.items():
                    if not (isinstance(component, type) and issubclass(component, contract)):
                        raise TypeError(f"{hook_name}()[{name!r}] is {component!r}, not a {contract.__name__} subclass")
            except Exception as error:  # noqa: BLE001
                registry.broken.append(BrokenPlugin(impl.plugin_name, label, f"{type(error).__name__}: {error}"))
                continue
            for name, component in provided.items():
                registry.add(Registration(kind.name, name, component, impl.plugin_name))
    if essential := [b for b in registry.broken if b.plugin in ESSENTIAL]:
        raise PluginError("an essential built-in plugin is broken (reinstall crayon-plugins): " + "; ".join(b.describe() for b in essential))
    return registry


@functools.cache
def default_registry() -> Registry:
    """The registry of the built-in plugins and every installed one (built once per process)."""
    return build_registry(metadata.entry_points(group=ENTRY_POINT_GROUP), builtins=True)
