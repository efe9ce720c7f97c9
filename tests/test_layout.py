"""The house's rules, checked on the code: a small package root, a core that imports no built-in
plugin, plugin authors' code that imports the framework through ``crayon_plugins.api`` only, and old
import paths that still work and warn."""

import ast
import importlib
import re
import string
import sys
from pathlib import Path

import pytest

import crayon_plugins
from crayon_plugins.testing import scaffold
from crayon_plugins.utils.moved import MODULES

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "crayon_plugins"
BUILTINS = ("crayon_plugins.plugins", "crayon_plugins.oracles")


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` imports (at any depth of the file), relative imports resolved against ``module``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_the_package_root_holds_at_most_eight_modules():
    modules = sorted(path.name for path in CORE.glob("*.py"))
    assert len(modules) <= 8, modules


def test_the_core_imports_no_builtin_plugin():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for name in imported_modules(path.read_text(), module):
            if name.startswith(BUILTINS):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_import_walk_sees_relative_and_nested_imports():
    source = "from ..plugins.refiners import jtt\ndef f():\n    import crayon_plugins.oracles.saliency\n"
    assert {"crayon_plugins.plugins.refiners", "crayon_plugins.oracles.saliency"} <= imported_modules(source, "crayon_plugins.run.x")


def framework_imports(source: str) -> list[str]:
    """The framework modules ``source`` imports names from, other than the API and the kit."""
    allowed = ("crayon_plugins.api", "crayon_plugins.testing", *BUILTINS)
    return sorted(name for name in imported_modules(source, "plugin") if name.startswith("crayon_plugins") and not name.startswith(allowed) and name != "crayon_plugins")


def plugin_authors_code() -> dict[str, str]:
    example = {str(path.relative_to(ROOT)): path.read_text() for path in (ROOT / "plugins" / "examples").rglob("*.py")}
    guide = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), flags=re.S)
    templates = {name: t.safe_substitute(cls="Mine", name="mine", package="mine") for name, t in vars(scaffold).items() if isinstance(t, string.Template) and name not in ("README", "PYPROJECT")}
    return {**example, **{f"docs/plugins.md example {i}": code for i, code in enumerate(guide)}, **{f"scaffold {name}": text for name, text in templates.items()}}


@pytest.mark.parametrize("where", sorted(plugin_authors_code()))
def test_plugin_authors_import_the_framework_from_the_api_only(where):
    source = plugin_authors_code()[where]
    if "crayon_plugins" not in source:
        pytest.skip("imports nothing of the framework")
    assert not framework_imports(source), f"{where} imports {framework_imports(source)}"
    assert not re.search(r"from crayon_plugins import (?!api\b)", source), f"{where} imports from the package root"


def test_the_scaffold_has_templates_to_check():
    assert sum("crayon_plugins.api" in text for name, text in plugin_authors_code().items() if name.startswith("scaffold")) >= 2


@pytest.mark.parametrize("old", sorted(MODULES))
def test_an_old_module_path_still_works_and_warns(old, monkeypatch):
    for name in [m for m in sys.modules if m == old or m.startswith(old + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(FutureWarning, match=re.escape(f"{old} moved to {MODULES[old]}")):
        module = importlib.import_module(old)
    new = importlib.import_module(MODULES[old])
    public = [name for name in dir(new) if not name.startswith("_")]
    assert public and all(getattr(module, name) is getattr(new, name) for name in public)


def test_names_that_left_a_package_still_answer_there_with_a_warning():
    with pytest.warns(FutureWarning, match="crayon_plugins.data.Answer moved to crayon_plugins.annotation.records.Answer"):
        from crayon_plugins.data import Answer
    from crayon_plugins.api import Answer as api_answer

    assert Answer is api_answer
    with pytest.raises(AttributeError):
        crayon_plugins.data.no_such_name  # noqa: B018


def test_the_version_is_the_distributions():
    from importlib.metadata import version

    assert crayon_plugins.__version__ == version("crayon-plugins")
