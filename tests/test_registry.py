import importlib
import importlib.metadata as metadata
import types

import pytest

from crayon_plugins import hookimpl
from crayon_plugins.api.components import Metric
from crayon_plugins.errors import PluginError, UnknownComponentError
from crayon_plugins.factory import create
from crayon_plugins.registry import ENTRY_POINT_GROUP, ESSENTIAL, build_registry, builtin_modules, default_registry


class Constant(Metric):
    def compute(self, predictions):
        return {"constant": 1.0}


def plugin(**hooks):
    """A plugin object whose hook implementations return ``hooks[name]``."""
    namespace = types.SimpleNamespace()
    for hook, value in hooks.items():
        setattr(namespace, hook, hookimpl(lambda value=value: value))
    return namespace


def test_builtins_are_the_modules_of_the_builtin_packages_each_its_own_plugin():
    registry = default_registry()
    assert not registry.broken and not registry.conflicts
    expected = {
        ("backbone", "timm"), ("dataset", "spurious-bars"), ("interpreter", "captum-gradcam"),
        ("interpreter", "gradcam"), ("annotation_source", "saliency-oracle"), ("refiner", "crayon-attention"),
        ("refiner", "group-balanced"), ("refiner", "finetune"), ("metric", "accuracy"), ("metric", "group-accuracy"),
    }
    assert expected <= {(r.kind, r.name) for r in registry.all()}
    assert registry.get("refiner", "crayon-attention").module == "crayon_plugins.plugins.refiners.crayon_attention"
    assert registry.get("refiner", "crayon-attention").plugin == "crayon_plugins.plugins.refiners.crayon_attention"
    assert registry.get("annotation_source", "saliency-oracle").plugin == "crayon_plugins.oracles.saliency"
    modules = builtin_modules()
    assert set(ESSENTIAL) <= set(modules) and not [m for m in modules if ".examples" in m]
    assert {r.plugin for r in registry.all()} <= set(modules) | {"example"}
    assert not [e for e in metadata.entry_points(group=ENTRY_POINT_GROUP) if e.value.startswith("crayon_plugins.")]  # built-ins need no entry point


def test_a_broken_builtin_is_isolated_and_an_essential_one_is_an_error(monkeypatch):
    real_import = importlib.import_module

    def failing(broken):
        def load(name, *args):
            if name == broken:
                raise ImportError(f"{name} is damaged")
            return real_import(name, *args)
        return load

    monkeypatch.setattr(importlib, "import_module", failing("crayon_plugins.plugins.refiners.jtt"))
    registry = build_registry(builtins=True)
    assert [b.plugin for b in registry.broken] == ["crayon_plugins.plugins.refiners.jtt"]
    assert "built-in module crayon_plugins.plugins.refiners.jtt" in registry.broken[0].describe()
    assert registry.get("refiner", "crayon-attention")
    monkeypatch.setattr(importlib, "import_module", failing("crayon_plugins.oracles.saliency"))
    with pytest.raises(PluginError, match=r"essential built-in plugin is broken.*crayon_plugins.oracles.saliency"):
        build_registry(builtins=True)


def test_a_name_registered_twice_names_both_plugins():
    registry = build_registry(extra_plugins={"first": plugin(crayon_metrics={"same": Constant}),
                                             "second": plugin(crayon_metrics={"same": Constant, "other": Constant})})
    with pytest.raises(PluginError, match=r"registered by both plugin 'first' .* and plugin 'second'"):
        registry.get("metric", "same")
    assert registry.get("metric", "other").plugin == "second"  # the rest still works


def test_a_plugin_that_fails_to_import_is_named_and_the_others_still_work():
    broken = metadata.EntryPoint("shiny", "no_such_module_for_crayon:thing", ENTRY_POINT_GROUP)
    registry = build_registry([broken], builtins=True)
    assert [b.plugin for b in registry.broken] == ["shiny"]
    assert "shiny = no_such_module_for_crayon:thing" in registry.broken[0].describe()
    assert "ModuleNotFoundError" in registry.broken[0].error
    assert registry.get("refiner", "crayon-attention")
    with pytest.raises(UnknownComponentError, match="failed to load may have provided it: plugin 'shiny'"):
        registry.get("refiner", "shiny-refiner")


@pytest.mark.parametrize(
    "hooks, error",
    [
        ({"crayon_metrics": ["not", "a", "mapping"]}, "not a mapping"),
        ({"crayon_metrics": {"x": object}}, "not a Metric subclass"),
        ({"crayon_metric": {"x": Constant}}, "unknown hook 'crayon_metric'"),
    ],
)
def test_malformed_plugins_are_reported_not_raised(hooks, error):
    registry = build_registry(extra_plugins={"odd": plugin(**hooks), "good": plugin(crayon_metrics={"fine": Constant})})
    assert [b.plugin for b in registry.broken] == ["odd"]
    assert error in registry.broken[0].error
    assert registry.get("metric", "fine").plugin == "good"


def test_a_hook_that_raises_is_a_broken_plugin():
    def explode():
        raise RuntimeError("boom")

    registry = build_registry(extra_plugins={"bad": types.SimpleNamespace(crayon_refiners=hookimpl(explode))})
    assert "RuntimeError: boom" in registry.broken[0].error


def test_unknown_name_lists_the_available_ones_and_suggests():
    with pytest.raises(UnknownComponentError) as info:
        create("refiner", "crayon-atention")
    message = str(info.value)
    assert "did you mean 'crayon-attention'" in message
    names = default_registry().names("refiner")
    assert {"crayon-attention", "crayon-pruning", "finetune"} <= set(names)
    assert f"available: {', '.join(names)}" in message
