"""Concept sheets: one PNG per neuron showing its top patches, and an index, for a person to judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.model.concepts import NeuronConcepts
from crayon_plugins.utils.progress import progress_bar

SHEET_COLUMNS = 5


def mosaic(concepts: NeuronConcepts, train: ImageSet, neuron: int, gap: int = 2) -> np.ndarray:
    """``(rows·(s+gap), SHEET_COLUMNS·(s+gap), 3)`` white canvas with the neuron's patches in reading order,
    each centred in an ``s``×``s`` slot (``s`` the largest patch side; patches clipped by the image
    border are smaller)."""
    boxes = concepts.boxes[neuron]
    side = int(max((boxes[:, 2] - boxes[:, 0]).max(), (boxes[:, 3] - boxes[:, 1]).max()))
    rows = -(-concepts.k // SHEET_COLUMNS)
    canvas = np.ones((rows * (side + gap), SHEET_COLUMNS * (side + gap), 3), dtype=np.float32)
    for slot, (top, left, bottom, right) in enumerate(boxes.tolist()):
        patch = train.images[int(concepts.top_images[neuron, slot])][:, top:bottom, left:right].permute(1, 2, 0).numpy()
        y = (slot // SHEET_COLUMNS) * (side + gap) + (side - patch.shape[0]) // 2
        x = (slot % SHEET_COLUMNS) * (side + gap) + (side - patch.shape[1]) // 2
        canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return canvas


def render_sheet(concepts: NeuronConcepts, train: ImageSet, neuron: int, path: Path) -> None:
    """Write ``path`` (PNG): neuron ``neuron``'s ``k`` patches, strongest first, each labelled with its
    maximum activation, under a title with the neuron id and its mean activation over the ``k``."""
    canvas = mosaic(concepts, train, neuron)
    rows = -(-concepts.k // SHEET_COLUMNS)
    slot = canvas.shape[1] / SHEET_COLUMNS
    figure = Figure(figsize=(1.5 * SHEET_COLUMNS, 1.5 * rows + 0.4))
    axis = figure.add_axes((0, 0, 1, 1.5 * rows / (1.5 * rows + 0.4)))
    axis.imshow(canvas, interpolation="nearest")
    axis.set_axis_off()
    for i, value in enumerate(concepts.top_activations[neuron].tolist()):
        x, y = (i % SHEET_COLUMNS) * slot + 1, (i // SHEET_COLUMNS) * slot + 1
        axis.text(x, y, f"{value:.3g}", fontsize=8, va="top", color="black", backgroundcolor="white")
    mean = float(concepts.top_activations[neuron].mean())
    figure.suptitle(f"{concepts.neuron_ids[neuron]}  ·  mean activation {mean:.3g} over its top {concepts.k}", y=0.995, va="top")
    figure.savefig(path, dpi=72)


def render_sheets(concepts: NeuronConcepts, train: ImageSet, out: Path, neurons: list[int] | None = None) -> Path:
    """One sheet per neuron (all, or ``neurons``) as ``out/<neuron id>.png`` plus ``out/index.md``
    listing them by mean activation; returns the index's path."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(range(len(concepts))) if neurons is None else neurons
    with progress_bar("render concept sheets", len(chosen)) as advance:
        for neuron in chosen:
            render_sheet(concepts, train, neuron, out / f"{concepts.neuron_ids[neuron]}.png")
            advance()
    means = concepts.top_activations.mean(dim=1)
    lines = [
        "# Neuron concepts",
        "",
        f"Each sheet shows a neuron's top {concepts.k} training images by maximum activation, cropped to the",
        "patch around the arg-max (strongest first, each labelled with its activation). Is the concept relevant",
        "to the label? Mark each neuron relevant, irrelevant or maybe.",
        "",
        "| neuron | mean activation (top k) | sheet |",
        "|---|---|---|",
    ]
    for neuron in sorted(chosen, key=lambda n: -float(means[n])):
        name = concepts.neuron_ids[neuron]
        lines.append(f"| {name} | {float(means[neuron]):.3g} | [![{name}]({name}.png)]({name}.png) |")
    index = out / "index.md"
    index.write_text("\n".join(lines) + "\n")
    return index
