"""The comparison table of ``crayon compare``: every method on one original model, like the CRAYON
paper's table, with the kind of annotation each needs."""

from __future__ import annotations

from collections.abc import Iterable

from .results import Results

KINDS = {"map-answers": "yes-no", "neuron-answers": "yes-no", "attention-maps": "map", "boxes": "box", "groups": "groups"}
"""A refiner's need → the annotation kind the table names, in the order they are listed."""

COLUMNS = {"WGA": ("wga",), "MGA": ("mga",), "accuracy": ("accuracy",), "RA": ("reasonability", "reasonable-accurate"), "UA": ("reasonability", "unreasonable-accurate")}
"""Table column → where its value sits in a row's metrics; all are shares shown in %."""

LOWER_IS_BETTER = {"UA"}


def annotation_kind(needs: Iterable[str]) -> str:
    """``"none"``, or the kinds a refiner's ``needs`` ask for joined by `` + `` (``"yes-no + map"``)."""
    kinds = {KINDS[need] for need in needs if need in KINDS}
    return " + ".join(kind for kind in dict.fromkeys(KINDS.values()) if kind in kinds) or "none"


def _value(metrics: dict, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def markdown_table(results: Results) -> str:
    """Method, annotation, then WGA, MGA, accuracy (and RA / UA when measured) in %, the best value
    of each column in bold (highest; lowest for UA, the unreasonable-accurate share)."""
    columns = [c for c, path in COLUMNS.items() if any(_value(r.metrics, path) is not None for r in results.rows)]
    values = {c: [_value(r.metrics, COLUMNS[c]) for r in results.rows] for c in columns}
    best = {}
    for c in columns:
        present = [v for v in values[c] if v is not None]
        best[c] = (min if c in LOWER_IS_BETTER else max)(present)
    lines = ["| method | annotation | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for i, row in enumerate(results.rows):
        cells = []
        for c in columns:
            v = values[c][i]
            text = "—" if v is None else f"{100 * v:.2f}"
            cells.append(f"**{text}**" if v is not None and round(v, 4) == round(best[c], 4) else text)
        lines.append(f"| {row.method} | {row.details.get('annotation', '—')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
