"""Writes the tables and figures of docs/attention.md: where each method's saliency maps put their
mass before and after refinement, from runs that recorded the ``attention`` metric.

    .venv/bin/python docs/where_attention_goes.py NAME=RESULTS [NAME=RESULTS ...] [--out docs/attention]

Each RESULTS is a ``crayon compare`` ``results.json`` or a study's ``results.csv``; NAME labels its
table and figure. Per method (and per study cell apart from its seed) it writes the mean over seeds,
± the sample standard deviation, of: the share of the map's mass on the object, on the cells where the
original model looked, the maps' normalised entropy and their spread, before (the original model's
maps of the same test images) and after, over all test images and over those whose original map a
noise-free oracle answers *no* or *yes* about, beside WGA and the unreasonable-accurate share. A seed
with no image in a subset has no number there; the ``seeds`` column counts the seeds that have. The figure draws
each method's move on the *no* images: a grey dot for the original's maps, a coloured one for the
refined model's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from crayon_plugins.study.runner import flat_metrics

NUMBERS = ("energy_on_object", "energy_where_original_looked", "entropy", "spread")
HEADINGS = {"energy_on_object": "on object", "energy_where_original_looked": "where the original looked", "entropy": "entropy", "spread": "spread"}
SUBSETS = {"attention": "all test images", "attention_no": "images whose original map is answered *no*", "attention_yes": "images whose original map is answered *yes*"}


def read(path: Path) -> dict[str, list[dict[str, float]]]:
    """Method (or study cell without its seed) → one flat metrics dict per seed."""
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    if path.suffix == ".json":
        results = json.loads(path.read_text())
        for row in results["rows"]:
            seeds = row.get("seeds") or [{"seed": results.get("seed", 0), "metrics": row["metrics"]}]
            runs[row["method"]] += [dict(flat_metrics(seed["metrics"])) for seed in seeds]
        return dict(runs)
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    with path.open(newline="") as f:
        for line in csv.DictReader(f):
            axes = tuple((k, v) for k, v in line.items() if k not in ("seed", "metric", "value") and v not in ("", None) and k != "refiner")
            label = line["refiner"] + "".join(f", {k} = {v}" for k, v in axes)
            cells[(label, line["seed"])][line["metric"]] = float(line["value"]) if line["value"] not in ("", "nan") else math.nan
    for (label, _), metrics in sorted(cells.items(), key=lambda item: (item[0][0], int(item[0][1]))):
        runs[label].append(metrics)
    return dict(runs)


def spread_of(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value) of the finite values: a seed without
    images in a subset (no map answered *yes*, say) has no number there and is left out."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarise(runs: dict[str, list[dict[str, float]]], subset: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Method → ``"<number>"`` and ``"original_<number>"`` of ``subset``, plus WGA, UA and the
    subset's share of the images, as (mean, std) over seeds; methods without the subset are left out."""
    found = {}
    for method, seeds in runs.items():
        if not any(f"{subset}:energy_on_object" in metrics for metrics in seeds):
            continue
        keys = [*NUMBERS, *(f"original_{n}" for n in NUMBERS), "images"]
        row = {key: spread_of([m.get(f"{subset}:{key}", math.nan) for m in seeds]) for key in keys}
        row["wga"] = spread_of([m.get("wga", math.nan) for m in seeds])
        row["ua"] = spread_of([m.get("reasonability:unreasonable-accurate", math.nan) for m in seeds])
        row["seeds"] = (sum(math.isfinite(m.get(f"{subset}:energy_on_object", math.nan)) for m in seeds), 0.0)
        found[method] = row
    return found


def _pct(value: tuple[float, float], std: bool = True) -> str:
    mean, sd = value
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * sd:.1f}" if std and math.isfinite(sd) else "")


def table(summary: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A markdown table: per method, each number as original → refined (± std over seeds), in %."""
    head = ["method", "seeds", *(f"{HEADINGS[n]}: original → refined" for n in NUMBERS), "WGA", "UA"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for method, row in summary.items():
        cells = [method, str(int(row["seeds"][0]))]
        cells += [f"{_pct(row[f'original_{n}'], std=False)} → {_pct(row[n])}" for n in NUMBERS]
        cells += [_pct(row["wga"]), _pct(row["ua"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(summary: dict[str, dict[str, tuple[float, float]]], title: str, path: Path) -> None:
    """Dumbbells per method: the original's maps (grey) and the refined model's (colour, ± std over
    seeds) for each number, on the images whose original map is answered *no*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in summary if m != "original"]
    fig, axes = plt.subplots(1, len(NUMBERS), figsize=(3.2 * len(NUMBERS), 0.32 * len(methods) + 1.6), sharey=True)
    for ax, number in zip(axes, NUMBERS):
        largest = 0.0
        for y, method in enumerate(methods):
            before, (after, sd) = summary[method][f"original_{number}"][0], summary[method][number]
            ax.plot([before, after], [y, y], color="0.75", zorder=1)
            ax.scatter([before], [y], color="0.55", s=18, zorder=2)
            ax.errorbar([after], [y], xerr=[sd if math.isfinite(sd) else 0.0], fmt="o", color="tab:blue", ms=5, capsize=2, zorder=3)
            largest = max(largest, before, after + (sd if math.isfinite(sd) else 0.0))
        ax.set_title(HEADINGS[number], fontsize=10)
        ax.set_xlim(0, 1 if number != "spread" or largest == 0 else 1.15 * largest)  # a spread is a few cells: its own scale
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(methods)), methods, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="NAME=RESULTS: a crayon compare results.json or a study results.csv")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "attention")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    text = []
    for source in args.sources:
        name, _, where = source.partition("=")
        if not where:
            parser.error(f"{source!r}: expected NAME=RESULTS")
        if not Path(where).is_file() or Path(where).suffix not in (".json", ".csv"):
            parser.error(f"{where}: not a crayon compare results.json or a study results.csv")
        runs = read(Path(where))
        for subset, words in SUBSETS.items():
            summary = summarise(runs, subset)
            if not summary:
                continue
            share = next(iter(summary.values()))["images"]
            text += [f"## {name}: {words}" + (f" ({_pct(share, std=False)} % of the test split)" if subset != "attention" else ""), "", table(summary), ""]
            if subset == "attention_no":
                path = args.out / f"where-attention-goes-{name}.png"
                figure(summary, f"{name}: maps the original had wrong (a noise-free oracle answers 'no')", path)
                text += [f"![{name}]({path.name})", ""]
    (args.out / "tables.md").write_text("\n".join(text))
    print(f"wrote {args.out / 'tables.md'} and its figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
