"""Figures people would rather look at than read: the reasonability matrix of each model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

JUDGEMENTS, OUTCOMES = ("reasonable", "unreasonable"), ("accurate", "inaccurate")


def reasonability_figure(counts: dict[str, int], title: str, path: Path) -> None:
    """Write ``path`` (PNG): the 2×2 reasonability matrix, each cell's count and share of the split,
    with the undecided images (annotator said *maybe* or abstained) noted below."""
    total = max(sum(counts.values()), 1)
    cells = np.array([[counts[f"{row}-{column}"] for column in OUTCOMES] for row in JUDGEMENTS])
    figure = Figure(figsize=(4.2, 3.6), layout="constrained")
    axis = figure.add_subplot()
    axis.imshow(cells / total, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(cells):
        colour = "white" if count / total > 0.5 else "black"
        axis.text(j, i, f"{count}\n{100 * count / total:.1f} %", ha="center", va="center", color=colour)
    axis.set_xticks([0, 1], OUTCOMES)
    axis.set_yticks([0, 1], JUDGEMENTS)
    axis.set_title(title)
    axis.set_xlabel(f"undecided (maybe): {counts.get('undecided', 0)} ({100 * counts.get('undecided', 0) / total:.1f} %)")
    figure.savefig(path, dpi=100)


def curves_figure(selection: dict, title: str, path: Path) -> None:
    """Write ``path`` (PNG): validation WGA, MGA and accuracy (%) per epoch of one trainer (worst-class
    and plain accuracy without a group attribute), the epoch its selection rule kept marked."""
    epochs = selection["validation"]
    x = np.arange(1, len(epochs) + 1)
    figure = Figure(figsize=(4.8, 3.4), layout="constrained")
    axis = figure.add_subplot()
    grouped = all("wga" in e for e in epochs)
    lines = (("wga", "worst-group"), ("mga", "mean-group"), ("accuracy", "in-distribution")) if grouped else (("worst_class_accuracy", "worst-class"), ("accuracy", "accuracy"))
    for metric, label in lines:
        axis.plot(x, [100 * e.get(metric, float("nan")) for e in epochs], marker="o", label=label)
    if selection.get("epoch"):
        axis.axvline(selection["epoch"], color="grey", linestyle="--", label=f"kept: epoch {selection['epoch']} ({selection['rule']})")
    axis.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(0, 100), xticks=x, title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=100)
