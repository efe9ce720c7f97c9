"""The configuration reference, ``docs/configuration.md``, rendered from the pydantic models.

Part 1 walks :class:`~crayon_plugins.config.RunConfig` and the models nested in it; part 2 lists the
options (the ``Params`` model) of every built-in component, by kind in the order a run uses them,
then by name. Each option is shown with its type, its constraints, its default and its
``description``; an option without one gets the clause of its model's docstring that names it in
double backticks (``epochs``), and an empty cell where no docstring names it. Nothing is invented.

Regenerate the page with::

    python -m crayon_plugins.run.config_reference > docs/configuration.md
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from crayon_plugins.config import ComponentSpec, RunConfig
from crayon_plugins.registry import BUILTIN_PACKAGES, KINDS, Registration, default_registry

COMMAND = "python -m crayon_plugins.run.config_reference > docs/configuration.md"
"""The command that regenerates ``docs/configuration.md``."""

SECTION_KINDS = {
    "dataset": "dataset",
    "backbone": "backbone",
    "interpreter": "interpreter",
    "annotator": "annotation_source",
    "concepts": "concept_extractor",
    "neuron_annotator": "annotation_source",
    "judge": "annotation_source",
    "refiner": "refiner",
    "refiners": "refiner",
    "metrics": "metric",
}
"""The component kind whose registered names (and options) a configuration field takes."""


# --- types, constraints, defaults -------------------------------------------------------------


def _constraint(meta: Any) -> str | None:
    """``> 0``, ``≤ 1``, ``length ≥ 1`` for one ``annotated_types`` constraint (``None``: another kind)."""
    for cls, attribute, symbol in (
        (annotated_types.Gt, "gt", ">"),
        (annotated_types.Ge, "ge", "≥"),
        (annotated_types.Lt, "lt", "<"),
        (annotated_types.Le, "le", "≤"),
    ):
        if isinstance(meta, cls):
            return f"{symbol} {_number(getattr(meta, attribute))}"
    if isinstance(meta, annotated_types.MinLen):
        return f"length ≥ {meta.min_length}"
    if isinstance(meta, annotated_types.MaxLen):
        return f"length ≤ {meta.max_length}"
    return None


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def render_type(annotation: Any) -> str:
    """A type as a user writes its values: ``int``, ``"a" | "b"``, ``list[str]``, ``int ≥ 0 | "whole"``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base, *metadata = args
        found = [c for m in metadata for c in ([_constraint(m)] + [_constraint(x) for x in getattr(m, "metadata", [])]) if c]
        return " ".join([render_type(base), *found]) if found else render_type(base)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else _toml(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("none" if a is type(None) else render_type(a) for a in args)
    if origin in (list, tuple, dict, set, frozenset):
        inner = ", ".join("..." if a is Ellipsis else render_type(a) for a in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    if annotation is Any:
        return "any"
    if annotation is type(None):
        return "none"
    if isinstance(annotation, type):
        if issubclass(annotation, ComponentSpec):
            return "component"
        if issubclass(annotation, BaseModel):
            return "section"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def constraints(field: FieldInfo) -> str:
    """The field's own constraints (``> 0``, ``≤ 1``), from its metadata."""
    return ", ".join(c for c in (_constraint(m) for m in field.metadata) if c)


def _toml(value: Any) -> str:
    """``value`` as TOML writes it (``None``: left out)."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _toml(value.value)
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, ComponentSpec):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in {"name": value.name, **value.params}.items()) + " }"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


def render_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _toml(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    return _toml(field.default)


# --- descriptions from docstrings ------------------------------------------------------------


def _paragraphs(doc: str | None) -> list[str]:
    text = inspect.cleandoc(doc or "")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _split_top_level(text: str, separators: str) -> list[str]:
    """``text`` split at each character of ``separators`` outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        elif char in separators and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _first_sentence(text: str) -> str:
    match = re.search(r"(?<!e\.g)(?<!i\.e)[.!?](?=\s|$)", text)
    sentence = text[: match.start() + 1] if match else text
    return sentence.strip()


def _sentences(paragraph: str) -> list[str]:
    found, rest = [], paragraph
    while rest:
        sentence = _first_sentence(rest)
        found.append(sentence)
        rest = rest[len(sentence) :].strip()
    return found


def docstring_clause(doc: str | None, name: str, names: set[str], leading: bool = False) -> str:
    """The clause of ``doc`` about the field ``name`` (written ````name```` in it), or ``""``.

    A paragraph that defines it (````name````: ...) gives the first sentence of its definition, up to
    the next field of ``names`` defined the same way; otherwise the first sentence that names it,
    narrowed to the part between semicolons (and before the next ``, ``other````) that names it
    (with ``leading``, only a part that starts with the name)."""
    token = f"``{name}``"
    others = "|".join(re.escape(f"``{n}``:") for n in sorted(names - {name}))
    for paragraph in _paragraphs(doc):
        at = paragraph.find(f"{token}:")
        if at >= 0:
            definition = paragraph[at + len(token) + 1 :]
            if others and (following := re.search(others, definition)):
                definition = definition[: following.start()]
            return _tidy(_first_sentence(definition.strip()))
    for paragraph in _paragraphs(doc):
        for sentence in _sentences(paragraph):
            if token not in sentence:
                continue
            for clause in _split_top_level(sentence.rstrip("."), ";"):
                for part in re.split(r",\s+(?=``)", clause):
                    if part.startswith(token) if leading else token in part:
                        return _tidy(part)
    return ""


def markdown(text: str) -> str:
    """reStructuredText's inline markup as Markdown: ````x```` → ```x```, ``:func:`~a.b``` → ```b```."""
    text = re.sub(r":\w+:`~[\w.]*?([\w]+)`", r"`\1`", text)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _tidy(text: str) -> str:
    return markdown(text.strip().rstrip(";,").strip())


def _docstrings(model: type[BaseModel], owner: type | None = None) -> list[tuple[str, bool]]:
    """The docstrings that may describe ``model``'s fields, each with whether only a clause that
    starts with the field's name counts: the model's own and its bases' (any clause naming it), then
    the component class that owns the model (which also speaks of other things)."""
    found = [
        (cls.__dict__["__doc__"], False)
        for cls in model.__mro__
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel and cls.__dict__.get("__doc__")
    ]
    if owner is not None and owner.__dict__.get("__doc__"):
        found.append((owner.__dict__["__doc__"], True))
    return found


def describe(model: type[BaseModel], name: str, field: FieldInfo, owner: type | None = None) -> str:
    """The field's ``description``, else its docstring clause, else ``""``."""
    if field.description:
        return " ".join(field.description.split())
    names = set(model.model_fields)
    for doc, leading in _docstrings(model, owner):
        if clause := docstring_clause(doc, name, names, leading):
            return clause
    return ""


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    found = _paragraphs(doc)
    return markdown(found[0]) if found else ""


# --- Markdown ----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def field_table(model: type[BaseModel], fields: dict[str, FieldInfo], owner: type | None = None) -> list[str]:
    lines = ["| option | type | default | description |", "|---|---|---|---|"]
    for name, field in fields.items():
        kind = render_type(field.annotation)
        bounds = constraints(field)
        shown = f"{kind}, {bounds}" if bounds else kind
        lines.append(
            f"| {_cell(_code(name))} | {_cell(_code(shown))} | {_cell(_code(render_default(field)))} | {_cell(describe(model, name, field, owner))} |"
        )
    return lines


def _kind_anchor(kind: str) -> str:
    return f"#{kind.replace('_', '-')}s"


def _kind_title(kind: str) -> str:
    return kind.replace("_", " ")


def run_configuration() -> list[str]:
    """Part 1: :class:`RunConfig` and the models nested in it."""
    fields = RunConfig.model_fields
    doc = RunConfig.__doc__
    names = set(fields)
    lines = [
        "## Part 1: the run configuration",
        "",
        (
            "`crayon run --config FILE` (and `compare`, `concepts`, `annotate`, and a study's `[base]`) reads "
            "TOML with these keys. Every key has a default, so a file names only what it changes; an unknown "
            "key, a value of the wrong type, and `inf` or `nan` anywhere are errors naming the file and the field."
        ),
        "",
        summary(doc),
        "",
        "### Top level",
        "",
    ]
    plain = {n: f for n, f in fields.items() if not _is_section(f)}
    lines += field_table(RunConfig, plain)
    for name in plain:
        if name in SECTION_KINDS:
            kind = SECTION_KINDS[name]
            lines += ["", f"`{name}` takes names of registered {_kind_title(kind)}s ([part 2]({_kind_anchor(kind)}))."]
    for name, field in fields.items():
        if name in plain:
            continue
        lines += ["", f"### `[{name}]`" if name != "refiner" else "### `[refiner.NAME]`", ""]
        annotation = field.annotation
        if annotation is ComponentSpec:
            lines += _component_section(name, field, docstring_clause(doc, name, names))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += _model_section(name, annotation)
        else:  # the per-refiner options
            clause = docstring_clause(doc, name, names)
            lines += [
                *([_sentence(clause), ""] if clause else []),
                (
                    "One table per refiner, `[refiner.crayon-attention]`, holding that refiner's options "
                    f"([part 2]({_kind_anchor('refiner')})); quote a name with `+` in it: `[refiner.\"crayon-attention+pruning\"]`. "
                    "A section for a refiner that is not registered, or not run, is an error."
                ),
            ]
    return lines


def _sentence(clause: str) -> str:
    """A docstring clause shown as a sentence of its own."""
    return clause[:1].upper() + clause[1:] + ("" if clause.endswith(".") else ".")


def _is_section(field: FieldInfo) -> bool:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return typing.get_origin(annotation) is dict


def _component_section(name: str, field: FieldInfo, clause: str) -> list[str]:
    kind = SECTION_KINDS.get(name)
    lines = [*([_sentence(clause), ""] if clause else [])]
    what = f"a registered {_kind_title(kind)} ([part 2]({_kind_anchor(kind)}))" if kind else ""
    row = f"| {_code('name')} | {_code('str')} | {_cell(_code(_toml(field.default.name)))} | {what} |"
    lines += ["| option | type | default | description |", "|---|---|---|---|", row]
    if kind:
        lines += [
            "",
            (
                f"Every other key is an option of the named {_kind_title(kind)} ([part 2]({_kind_anchor(kind)})); "
                f"a section without `name` configures the default, {_toml(field.default.name)}."
            ),
        ]
    return lines


def _model_section(name: str, model: type[BaseModel]) -> list[str]:
    lines: list[str] = []
    for paragraph in _paragraphs(model.__doc__):
        lines += [markdown(paragraph), ""]
    plain = {n: f for n, f in model.model_fields.items() if f.annotation is not ComponentSpec}
    if plain:
        lines += field_table(model, plain)
    for sub, field in model.model_fields.items():
        if field.annotation is ComponentSpec:
            lines += [f"#### `[{name}.{sub}]`", ""]
            lines += _component_section(sub, field, docstring_clause(model.__doc__, sub, set(model.model_fields)))
    while lines and not lines[-1]:
        lines.pop()
    return lines


def builtin_registrations() -> list[Registration]:
    """Every built-in component (third-party plugins left out), by kind in :data:`KINDS` order, then name."""
    order = {kind: i for i, kind in enumerate(KINDS)}
    found = [r for r in default_registry().all() if r.plugin.startswith(BUILTIN_PACKAGES)]
    return sorted(found, key=lambda r: (order[r.kind], r.name))


def component_options() -> list[str]:
    """Part 2: the options of every built-in component."""
    lines = [
        "## Part 2: the options of the built-in components",
        "",
        (
            "A component's options go in its configuration section beside `name` (`[dataset] name = "
            "\"waterbirds\"` with `root = …`), a refiner's in `[refiner.NAME]`. Third-party plugins document "
            "their own; `crayon plugins` lists every installed component."
        ),
    ]
    by_kind: dict[str, list[Registration]] = {}
    for registration in builtin_registrations():
        by_kind.setdefault(registration.kind, []).append(registration)
    for kind, registrations in by_kind.items():
        lines += ["", f"### {_kind_title(kind).capitalize()}s"]
        for registration in registrations:
            component = registration.component
            params = component.Params
            lines += ["", f"#### {_kind_title(kind)} `{registration.name}`", ""]
            if first := summary(component.__dict__.get("__doc__")):
                lines += [first, ""]
            lines += [f"Module: `{registration.module}`, class `{component.__qualname__}`.", ""]
            if params.model_fields:
                lines += field_table(params, dict(params.model_fields), component)
            else:
                lines += ["No options."]
    return lines


def config_reference() -> str:
    """``docs/configuration.md``: the run configuration's keys and every built-in component's options."""
    lines = [
        "# Configuration reference",
        "",
        (
            f"Generated from the pydantic models by `{COMMAND}`; edit the models, not this page "
            "(`tests/test_config_reference.py` fails when the two differ). Types are written as values are in "
            "TOML (`\"a\" | \"b\"`: one of these strings; `none`: the key may be left out). Defaults: `(unset)`: "
            "off unless given; `required`: must be given."
        ),
        "",
        *run_configuration(),
        "",
        *component_options(),
    ]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
