"""The results of a run: ``results.json`` and the printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.table import Table

from .figures import reasonability_figure
from .files import write_atomically


class ResultRow(BaseModel):
    """One method's numbers (fractions in ``[0, 1]``); ``details`` holds what else it reports."""

    method: str
    metrics: dict[str, Any]
    details: dict[str, Any] = Field(default_factory=dict)


class Results(BaseModel):
    """What ``crayon run`` writes to ``DIR/results.json``."""

    dataset: str
    backbone: str
    seed: int
    annotations: dict[str, int] = Field(default_factory=dict)
    neuron_annotations: dict[str, int] = Field(default_factory=dict)
    annotation_stats: dict[str, dict[str, float]] = Field(default_factory=dict)
    rows: list[ResultRow] = Field(default_factory=list)

    def row(self, method: str) -> ResultRow:
        return next(r for r in self.rows if r.method == method)

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/results.json`` atomically, and ``reasonability-<method>.png`` for each
        row with a reasonability matrix; returns the JSON's path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for row in self.rows:
            if "reasonability_counts" in row.metrics:
                reasonability_figure(row.metrics["reasonability_counts"], f"{row.method} · test split", directory / f"reasonability-{row.method}.png")
        path = directory / "results.json"
        write_atomically(path, json.dumps(self.model_dump(), indent=2) + "\n")
        return path

    def table(self) -> Table:
        """Method, WGA, MGA and accuracy in %, one row per method; the reasonable-accurate (RA) and
        unreasonable-accurate (UA) shares if measured; neurons pruned if any were."""
        title = " · ".join(part.split("(", 1)[0] for part in (self.dataset, self.backbone))
        table = Table(title=f"{title} · seed {self.seed}")
        table.add_column("method")
        for column in ("WGA", "MGA", "accuracy"):
            table.add_column(column, justify="right")
        reasonability = any("reasonability" in row.metrics for row in self.rows)
        if reasonability:  # shares of the test split whose maps the annotator found (un)reasonable, accurate
            table.add_column("RA", justify="right")
            table.add_column("UA", justify="right")
        pruned = any(row.details.get("neurons_pruned") for row in self.rows)
        if pruned:
            table.add_column("pruned", justify="right")
        for row in self.rows:
            cells = [row.metrics.get(k) for k in ("wga", "mga", "accuracy")]
            if reasonability:
                quadrants = row.metrics.get("reasonability", {})
                cells += [quadrants.get("reasonable-accurate"), quadrants.get("unreasonable-accurate")]
            texts = ["—" if v is None else f"{100 * v:.2f}" for v in cells]
            table.add_row(row.method, *texts, *([str(row.details.get("neurons_pruned", "—"))] if pruned else []))
        return table
