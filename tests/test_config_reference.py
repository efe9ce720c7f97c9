"""docs/configuration.md is generated from the pydantic models and must match them."""

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from crayon_plugins.config import RunConfig
from crayon_plugins.run.config_reference import COMMAND, builtin_registrations, config_reference, docstring_clause, field_table, render_type

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_docs_configuration_md_matches_the_models():
    expected = config_reference()
    assert PAGE.exists(), f"{PAGE} is missing; generate it with: {COMMAND}"
    assert PAGE.read_text(encoding="utf-8") == expected, f"docs/configuration.md is out of date with the configuration models; regenerate it with: {COMMAND}"


def test_every_run_configuration_key_and_builtin_component_is_listed():
    page = config_reference()
    for name in RunConfig.model_fields:
        assert f"`{name}`" in page or f"`[{name}]`" in page or f"`[{name}.NAME]`" in page, name
    for registration in builtin_registrations():
        assert f"{registration.kind.replace('_', ' ')} `{registration.name}`" in page, registration
        for option in registration.component.Params.model_fields:
            assert f"| `{option}` |" in page, (registration.name, option)


def test_third_party_components_are_left_out():
    assert all(r.plugin.startswith(("crayon_plugins.plugins", "crayon_plugins.oracles")) for r in builtin_registrations())


class Example(BaseModel):
    """How something runs: ``steps`` times over the data.

    ``mode``: what it does; ``auto``: chosen for you. ``rate``: how fast (per second).
    """

    steps: int = Field(default=3, gt=0)
    mode: str = "auto"
    rate: float = Field(default=0.5, ge=0, le=1, description="the rate itself")
    quiet: bool = False


def test_a_field_without_description_takes_its_docstring_clause_or_stays_empty():
    rows = {line.split("|")[1].strip(): line for line in field_table(Example, dict(Example.model_fields))[2:]}
    assert rows["`steps`"].endswith("| How something runs: `steps` times over the data |")
    assert "| what it does; `auto`: chosen for you. |" in rows["`mode`"]
    assert "| the rate itself |" in rows["`rate`"]
    assert rows["`quiet`"].endswith("|  |")
    assert "`int, > 0`" in rows["`steps`"] and "`float, ≥ 0, ≤ 1`" in rows["`rate`"]


@pytest.mark.parametrize(
    ("doc", "name", "leading", "expected"),
    [
        ("``a`` reads the data; ``b`` writes it, ``c`` checks it.", "b", False, "`b` writes it"),
        ("``a`` reads the data; ``b`` writes it, ``c`` checks it.", "c", False, "`c` checks it"),
        ("Uses ``a`` (or ``b``; rarely) to read.", "b", True, ""),
        ("Uses ``a`` (or ``b``; rarely) to read.", "b", False, "Uses `a` (or `b`; rarely) to read"),
        ("Nothing about it.", "a", False, ""),
    ],
)
def test_docstring_clauses(doc, name, leading, expected):
    assert docstring_clause(doc, name, {"a", "b", "c"}, leading) == expected


def test_types_read_as_toml_values():
    from typing import Literal

    assert render_type(Literal["x", "y"]) == '"x" | "y"'
    assert render_type(int | None) == "int | none"
    assert render_type(tuple[float, ...]) == "tuple[float, ...]"
