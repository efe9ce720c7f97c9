"""The comparison table of ``crayon compare``: every method on one original model, like the CRAYON
paper's table, with the kind of annotation each needs."""

from __future__ import annotations

import math
from collections.abc import Iterable

from crayon_plugins.api.components import Need
from crayon_plugins.run.results import METRIC_COLUMNS, Results, percent, value_at

LOWER_IS_BETTER = {"UA"}

BOLD_RULE = (
    "Bold: the best mean of a column, when it is ahead of the runner-up's by more than the two "
    "standard deviations added together (with one seed: the best value, unless tied)."
)


def annotation_kind(needs: Iterable[str]) -> str:
    """``"none"``, or the kinds a refiner's ``needs`` ask for joined by `` + `` (``"yes-no + map"``)."""
    asked = set(needs)
    return " + ".join(dict.fromkeys(need.label for need in Need if need.label and need in asked)) or "none"


def best_row(means: list[float | None], stds: list[float | None], lower_is_better: bool = False) -> int | None:
    """The row whose mean is best and clear of the runner-up by more than both standard deviations
    added (missing deviations count as 0), or ``None`` when no row is."""
    ranked = sorted((i for i, m in enumerate(means) if m is not None and not math.isnan(m)), key=lambda i: means[i], reverse=not lower_is_better)
    if not ranked:
        return None
    if len(ranked) == 1:
        return ranked[0]
    first, second = ranked[0], ranked[1]
    gap = abs(means[first] - means[second])
    return first if gap > (stds[first] or 0.0) + (stds[second] or 0.0) and gap > 0 else None


def markdown_table(results: Results) -> str:
    """Method, annotation, then WGA, MGA, accuracy (and RA / UA when measured) in %, mean ± standard
    deviation over seeds when there are several; the best of each column in bold by :data:`BOLD_RULE`
    (highest; lowest for UA, the unreasonable-accurate share). The rule follows the table."""
    columns = results.columns()
    lines = ["| method | annotation | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    texts = {c: [percent(value_at(r.metrics, METRIC_COLUMNS[c]), value_at(r.std, METRIC_COLUMNS[c])) for r in results.rows] for c in columns}
    for c in columns:
        best = best_row([value_at(r.metrics, METRIC_COLUMNS[c]) for r in results.rows], [value_at(r.std, METRIC_COLUMNS[c]) for r in results.rows], c in LOWER_IS_BETTER)
        if best is not None:
            texts[c][best] = f"**{texts[c][best]}**"
    for i, row in enumerate(results.rows):
        lines.append(f"| {row.method} | {row.details.get('annotation', '—')} | " + " | ".join(texts[c][i] for c in columns) + " |")
    rules = sorted({entry["rule"] for row in results.rows for entry in row.selection})
    used = ", ".join(f"`{rule}`" for rule in rules) or "none recorded"
    groups = " (`val-wga` picks epochs by validation worst-group accuracy, so it uses validation group labels)" if "val-wga" in rules else ""
    note = "".join(f" {n}" for n in results.notes())
    return "\n".join(lines) + f"\n\n{BOLD_RULE} Epochs kept by the selection rule {used}{groups}.{note}\n"
