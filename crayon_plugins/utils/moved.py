"""Old import paths of what moved when the package was grouped by concern, kept working for one release.

Importing an old module path (``crayon_plugins.components``) gives a module that answers every name
from the new one and warns once with a :class:`FutureWarning` naming where it went; a name asked of a
package that kept its path but lost the name (``from crayon_plugins.data import Answer``) does the
same. Plugin authors import from :mod:`crayon_plugins.api`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from typing import Any

P = "crayon_plugins"
_PLUGINS = {
    "timm_backbone": "backbones.timm",
    "spurious_bars": "datasets.spurious_bars",
    "waterbirds": "datasets.waterbirds",
    "biased_celeba": "datasets.biased_celeba",
    "backgrounds_challenge": "datasets.backgrounds_challenge",
    "captum_interpreters": "interpreters.captum",
    "gradcam": "interpreters.gradcam",
    "top_patches": "concepts.top_patches",
    "crayon_attention": "refiners.crayon_attention",
    "crayon_pruning": "refiners.crayon_pruning",
    "gradia": "refiners.gradia",
    "map_guided": "refiners.map_guided",
    "map_baselines": "refiners.map_baselines",
    "jtt": "refiners.jtt",
    "dfr": "refiners.dfr",
    "finetune": "refiners.finetune",
    "group_balanced": "refiners.group_balanced",
    "group_metrics": "metrics.groups",
    "background_metrics": "metrics.backgrounds",
    "reasonability": "metrics.reasonability",
    "human": "annotators.human",
}
MODULES = {
    **{f"{P}.{old}": f"{P}.{new}" for old, new in {
        "hookspecs": "api.hookspecs",
        "components": "api.components",
        "finetuning": "api.finetuning",
        "image_folders": "api.folders",
        "items": "data.items",
        "checkpoints": "model.checkpoints",
        "features": "model.features",
        "maps": "model.maps",
        "energy": "training.energy",
        "budget": "annotation.budget",
        "answers": "annotation.answers",
        "annotation_task": "annotation.task",
        "annotation_server": "annotation.server",
        "label_studio": "annotation.label_studio",
        "annotation_report": "annotation.report",
        "concept_sheets": "annotation.sheets",
        "real_annotators": "annotation.paper_mix",
        "pipeline": "run.pipeline",
        "stages": "run.stages",
        **{f"stages.{stage}": f"run.stages.{stage}" for stage in ("load", "original", "explain", "annotate", "refine", "evaluate", "report")},
        "cache": "run.cache",
        "results": "run.results",
        "compare": "run.table",
        "figures": "run.figures",
        "seeds": "study.seeds",
        "scaffold": "testing.scaffold",
        "files": "utils.files",
        "progress": "utils.progress",
    }.items()},
    **{f"{P}.plugins.{old}": f"{P}.plugins.{new}" for old, new in _PLUGINS.items()},
    f"{P}.oracles.panel": f"{P}.annotation.panel",
}
"""Old module path → the module that holds it now."""


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new} and the old path goes in the next release; plugins import from crayon_plugins.api", FutureWarning, stacklevel=3)


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths of :data:`MODULES`; each loads as a stand-in for the new module."""

    def find_spec(self, fullname: str, path: Any, target: Any = None):
        if fullname not in MODULES:
            return None
        new = importlib.util.find_spec(MODULES[fullname])
        return importlib.util.spec_from_loader(fullname, self, is_package=bool(new and new.submodule_search_locations))

    def exec_module(self, module) -> None:
        new = MODULES[module.__name__]
        target = importlib.import_module(new)
        _warn(module.__name__, new)
        module.__getattr__ = lambda name: getattr(target, name)
        module.__dir__ = lambda: dir(target)
        if hasattr(target, "__path__"):
            module.__path__ = []


def install() -> None:
    """Make the old module paths importable (once per process)."""
    if not any(isinstance(finder, _OldPath) for finder in sys.meta_path):
        sys.meta_path.append(_OldPath())


def moved_names(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` answering each of ``names`` (name → the module that
    holds it now) with a warning."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{names[name]}.{name}")
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
