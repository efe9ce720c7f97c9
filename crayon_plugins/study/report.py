"""``crayon study report``: ``report.md`` with plots from a study's ``results.csv``.

Every number is a mean over seeds with a 95% interval (Student's t over the seeds). Sections appear
for what the grid varies: budget, noise (flip, abstention, bias, answer mix) and measured agreement.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from crayon_plugins.annotation.records import Question  # noqa: E402
from crayon_plugins.errors import CrayonError  # noqa: E402
from crayon_plugins.study.runner import read_record  # noqa: E402
from crayon_plugins.study.spec import NOISE_AXES, StudySpec, load_spec  # noqa: E402

NEAR_PEAK = 0.02
""""Near peak": within two points of WGA of the best mean."""


def interval(values: pd.Series) -> pd.Series:
    """Mean and 95% t-interval half-width of ``values`` (half-width NaN for a single value)."""
    values = values.dropna()
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return pd.Series({"mean": values.mean(), "half": half, "n": n})


def summarise_cells(cells: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """Per combination of ``by``: ``mean``, ``half`` (95% half-width) and ``n`` seeds of ``metric``."""
    return cells.groupby(by, dropna=False)[metric].apply(interval).unstack().reset_index()


def pct(mean: float, half: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{100 * mean:.1f}"
    return text if half is None or math.isnan(half) else f"{text} ± {100 * half:.1f}"


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (refiner, seed and axes), one column per metric."""
    keys = [c for c in frame.columns if c not in ("metric", "value")]
    return frame.pivot_table(index=keys, columns="metric", values="value", dropna=False).reset_index().dropna(subset=["wga"])


def _line_plot(summary: pd.DataFrame, cells: pd.DataFrame, x: str, lines: list[str], path: Path, xlabel: str, baseline: float | None, log: bool = False) -> None:
    """Per refiner, mean WGA against ``x`` with its 95% band (clipped to 0–100%) and each seed's
    value as a faint dot, one line per combination of ``lines``."""
    refiners = list(dict.fromkeys(summary["refiner"]))
    fig, axes = plt.subplots(1, len(refiners), figsize=(4.6 * len(refiners), 3.6), sharey=True, squeeze=False)
    for ax, refiner in zip(axes[0], refiners):
        part = summary[summary["refiner"] == refiner]
        groups = part.groupby(lines, dropna=False) if lines else [((), part)]
        seeds = cells[cells["refiner"] == refiner]
        for name, group in groups:
            group = group.sort_values(x)
            name = name if isinstance(name, tuple) else (name,)
            label = ", ".join(str(v) for v in name) or refiner
            line = ax.plot(group[x], 100 * group["mean"], marker="o", label=label)[0]
            ax.fill_between(group[x], 100 * (group["mean"] - group["half"].fillna(0)), 100 * (group["mean"] + group["half"].fillna(0)), alpha=0.15, color=line.get_color())
            mine = seeds[np.logical_and.reduce([(seeds[c] == v).to_numpy() for c, v in zip(lines, name)] + [np.ones(len(seeds), bool)])]
            ax.scatter(mine[x], 100 * mine["wga"], s=10, alpha=0.45, color=line.get_color())
        if baseline is not None:
            ax.axhline(100 * baseline, color="grey", linestyle="--", label="original")
        ax.set(title=refiner, xlabel=xlabel, xscale="log" if log else "linear", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("worst-group accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(summary: pd.DataFrame, rows: list[str], column: str) -> str:
    """Markdown table: one row per combination of ``rows``, one column per value of ``column``."""
    values = sorted(summary[column].dropna().unique(), key=lambda v: (isinstance(v, str), v))
    lines = ["| " + " | ".join([*rows, *(f"{column} {v}" for v in values)]) + " |", "|" + "---|" * (len(rows) + len(values))]
    for name, group in summary.groupby(rows, dropna=False):
        name = name if isinstance(name, tuple) else (name,)
        cells = [pct(*group.loc[group[column] == v, ["mean", "half"]].iloc[0]) if (group[column] == v).any() else "—" for v in values]
        lines.append("| " + " | ".join([*(str(n) for n in name), *cells]) + " |")
    return "\n".join(lines)


def _resolution(summary: pd.DataFrame) -> str:
    """Whether the seeds resolve a 2-point difference: the median 95% half-width against 2 points."""
    half = summary["half"].median()
    if math.isnan(half):
        return "With one seed per cell there are no intervals: differences of a few points may be seed noise."
    if half <= NEAR_PEAK:
        return f"The median 95% half-width is {100 * half:.1f} points: the seeds resolve the 2-point margin."
    return (
        f"**Caution:** the median 95% half-width is {100 * half:.1f} points, wider than the 2-point margin: with "
        f"{int(summary['n'].max())} seeds these 'within 2 points' statements are about the means only, and more seeds are needed to settle them."
    )


def _budget_section(cells: pd.DataFrame, out: Path, baseline: float) -> list[str]:
    lines = [c for c in ("selection",) if c in cells]
    summary = summarise_cells(cells, "wga", ["refiner", *lines, "budget"])
    _line_plot(summary, cells, "budget", lines, out / "wga-budget.png", "share of training items annotated", baseline, log=True)
    text = ["## WGA against annotation budget", "", "![WGA against budget](wga-budget.png)", "", _table(summary, ["refiner", *lines], "budget"), ""]
    for name, group in summary.groupby(["refiner", *lines]):
        name = name if isinstance(name, tuple) else (name,)
        peak = group.loc[group["mean"].idxmax()]
        near = group[group["mean"] >= peak["mean"] - NEAR_PEAK]["budget"].min()
        at_ten = group.loc[(group["budget"] - 0.1).abs().idxmin()]
        verdict = "within" if at_ten["mean"] >= peak["mean"] - NEAR_PEAK else "not within"
        text.append(
            f"- {' · '.join(map(str, name))}: peak {pct(peak['mean'])}% at budget {peak['budget']:g}; smallest budget within "
            f"2 points of the peak: {near:g}; at {at_ten['budget']:g}: {pct(at_ten['mean'])}% ({verdict} 2 points)."
        )
    text += ["", _resolution(summary)]
    return text + [""]


def _noise_section(cells: pd.DataFrame, out: Path, baseline: float) -> list[str]:
    varied = [a for a in NOISE_AXES if a in cells and a != "answer_mix"]
    lines = [a for a in ("answer_mix", "aggregation", "selection") if a in cells]
    text = ["## WGA against annotator noise", ""]
    for axis in varied:
        summary = summarise_cells(cells, "wga", ["refiner", *lines, axis])
        name = f"wga-{axis.replace('_', '-')}.png"
        _line_plot(summary, cells, axis, lines, out / name, axis.replace("_", " "), baseline)
        text += [f"![WGA against {axis}]({name})", "", _table(summary, ["refiner", *lines], axis), ""]
        for group_name, group in summary.groupby(["refiner", *lines]):
            group_name = group_name if isinstance(group_name, tuple) else (group_name,)
            group = group.sort_values(axis)
            clean = group.iloc[0]
            kept = group[group["mean"] >= clean["mean"] - NEAR_PEAK][axis]
            text.append(
                f"- {' · '.join(map(str, group_name))}: {pct(clean['mean'])}% at {axis} {clean[axis]:g}, {pct(group.iloc[-1]['mean'])}% at "
                f"{group.iloc[-1][axis]:g}; within 2 points of the least noisy up to {axis} {kept.max():g}."
            )
        text += ["", _resolution(summary), ""]
    if "error_rate" in cells:
        summary = summarise_cells(cells.dropna(subset=["error_rate"]), "error_rate", ["refiner", *lines, *varied[:1]])
        if len(summary):
            text += ["Share of the aggregated yes / no answers that differ from the noise-free oracle's answer, which may be *maybe* (maps for crayon-attention, neurons for crayon-pruning):", "", _table(summary, ["refiner", *lines], varied[0]) if varied else "", ""]
    return text


def _paired(cells: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with ``dwga``: each cell's WGA minus its own seed's original model's, so a seed's
    luck with the original model does not count as the method's."""
    base = original.set_index("seed")["wga"]
    return cells.assign(dwga=cells["wga"] - cells["seed"].map(base))


def _paired_section(cells: pd.DataFrame, axes: list[str]) -> list[str]:
    """The paired change of WGA against each cell's own seed's original model, per refiner and axes."""
    if "dwga" not in cells or cells["dwga"].isna().all():
        return []
    summary = summarise_cells(cells, "dwga", ["refiner", *axes[:-1], axes[-1]]) if axes else summarise_cells(cells, "dwga", ["refiner"])
    text = ["## Paired change against each seed's own original model", "",
            "Δ WGA = a cell's WGA minus the WGA of the original model of the same seed (points; mean and 95% t-interval over seeds): "
            "the seeds' original models differ a lot, so this is the change a method makes.", ""]
    if axes:
        table = _table(summary, ["refiner", *axes[:-1]], axes[-1])
    else:
        table = "| refiner | Δ WGA |\n|---|---|\n" + "\n".join(f"| {r.refiner} | {pct(r.mean, r.half)} |" for r in summary.itertuples())
    return text + [table, ""]


def _options_section(cells: pd.DataFrame, options: list[str], rule: str, out: Path) -> list[str]:
    """Per refiner-option axis: WGA per value, the value validation picks, and for α × β of
    ``crayon-attention`` (or any refiner's two options) a heatmap of mean WGA."""
    score = "val.plain_accuracy" if rule == "val-accuracy" else "val.wga"
    text = ["## Refiner options", "",
            f"Per value, mean test WGA over seeds and the other axes' values; **picked on validation**: the value with the best mean validation "
            f"{'accuracy' if score == 'val.plain_accuracy' else 'worst-group accuracy'} at the epoch each cell kept (selection rule `{rule}`), "
            "which is how to choose it without looking at the test split.", ""]
    for key in options:
        refiner = key.split(".")[1]
        part = cells[(cells["refiner"] == refiner)]
        if part.empty:
            continue
        summary = summarise_cells(part, "wga", ["refiner", key])
        text += [_table(summary, ["refiner"], key), ""]
        picked = part.groupby(key)[score].mean().dropna() if score in part else pd.Series(dtype=float)
        if len(picked):
            tied = [value for value, score_of in picked.items() if score_of == picked.max()]
            tie = f" Validation could not separate {', '.join(map(str, tied))}: the first is shown, and validation does not justify it." if len(tied) > 1 else ""
            text.append(f"- `{key}` picked on validation: **{picked.idxmax()}** (validation {pct(picked.max())}%); "
                        f"best on test: {summary.loc[summary['mean'].idxmax(), key]} ({pct(summary['mean'].max())}%).{tie}")
            text.append("")
    by_refiner: dict[str, list[str]] = {}
    for key in options:
        by_refiner.setdefault(key.split(".")[1], []).append(key)
    for refiner, keys in by_refiner.items():
        if len(keys) < 2:
            continue
        rows, columns = keys[0], keys[1]
        grid = cells[cells["refiner"] == refiner].groupby([rows, columns])["wga"].mean().unstack(columns)
        fig, ax = plt.subplots(figsize=(1.2 * grid.shape[1] + 2.4, 0.8 * grid.shape[0] + 1.6))
        image = ax.imshow(100 * grid.to_numpy(), cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, pct(value), ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.set(xlabel=columns.split(".")[-1], ylabel=rows.split(".")[-1], title=f"{refiner}: mean WGA (%)")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        name = f"wga-{refiner}-{rows.split('.')[-1]}-{columns.split('.')[-1]}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        text += [f"![{refiner}: WGA over {rows.split('.')[-1]} × {columns.split('.')[-1]}]({name})", ""]
    return text


def _agreement_section(cells: pd.DataFrame, out: Path) -> list[str]:
    fig, axes = plt.subplots(1, cells["refiner"].nunique(), figsize=(4.6 * cells["refiner"].nunique(), 3.6), sharey=True, squeeze=False)
    hue = "aggregation" if "aggregation" in cells else None
    text = ["## WGA against measured agreement", "", "![WGA against Cohen's kappa](wga-agreement.png)", ""]
    for ax, (refiner, part) in zip(axes[0], cells.groupby("refiner", sort=False)):
        for name, group in part.groupby(hue) if hue else [(refiner, part)]:
            ax.scatter(group["kappa"], 100 * group["wga"], label=str(name), alpha=0.8)
        ax.set(title=refiner, xlabel="mean pairwise Cohen's κ of the panel")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        rho, p = stats.spearmanr(part["kappa"], part["wga"])
        text.append(f"- {refiner}: Spearman ρ(κ, WGA) = {rho:.2f} over {len(part)} cells (p = {p:.2g}).")
    axes[0][0].set_ylabel("worst-group accuracy (%)")
    fig.tight_layout()
    fig.savefig(out / "wga-agreement.png", dpi=110)
    plt.close(fig)
    by = ["refiner", *(a for a in ("flip_rate", "aggregation", "panel_size", "spread") if a in cells)]
    table = cells.groupby(by).agg(kappa=("kappa", "mean"), fleiss=("fleiss", "mean"), alpha=("alpha", "mean"), error=("error_rate", "mean"), wga=("wga", "mean")).reset_index()
    text += ["", "| " + " | ".join(by) + " | Cohen's κ | Fleiss' κ | Krippendorff's α | error rate | WGA |", "|" + "---|" * (len(by) + 5)]
    for _, row in table.iterrows():
        text.append("| " + " | ".join(str(row[b]) for b in by) + f" | {row.kappa:.3f} | {row.fleiss:.3f} | {row.alpha:.3f} | {pct(row.error)} | {pct(row.wga)} |")
    return text + [""]


def _question_columns(cells: pd.DataFrame) -> pd.DataFrame:
    """``kappa``, ``fleiss``, ``alpha``, ``error_rate``: of the answers each cell's refiner used."""
    cells = cells.copy()
    for short, metric in (("kappa", "cohen_kappa"), ("fleiss", "fleiss_kappa"), ("alpha", "krippendorff_alpha"), ("error_rate", "error_rate")):
        columns = [f"{q}.{metric}" for q in (Question.MAPS, Question.NEURONS) if f"{q}.{metric}" in cells]
        cells[short] = cells[columns].bfill(axis=1).iloc[:, 0] if columns else np.nan
    return cells


def read_results(path: Path, spec: StudySpec) -> pd.DataFrame:
    """``results.csv`` as ``crayon study run`` writes it for ``spec``; a :class:`CrayonError` naming the
    file and the first bad row if it is damaged."""
    expected = ["refiner", "seed", *spec.grid.varied(), "metric", "value"]
    try:
        frame = pd.read_csv(path, dtype={"metric": str, "refiner": str}, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CrayonError(f"{path}: damaged, not the CSV `crayon study run` writes ({type(error).__name__}); run the study again to rebuild it") from None
    if list(frame.columns) != expected:
        raise CrayonError(f"{path}: damaged: the columns are {list(frame.columns)}, expected {expected}; run the study again to rebuild it")
    for column in ("seed", "value"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if bad := [i for i in frame.index[numbers.isna()] if str(frame.at[i, column]).lower() != "nan"]:
            raise CrayonError(f"{path}: damaged: row {bad[0] + 2} has {column} {frame.at[bad[0], column]!r}, not a number; run the study again to rebuild it")
        frame[column] = numbers
    return frame


def write_report(directory: str | Path) -> Path:
    """Write ``directory/report.md`` and its PNG plots; returns the report's path."""
    directory = Path(directory)
    if not (directory / "results.csv").exists():
        raise CrayonError(f"{directory}: no results.csv (run `crayon study run` first)")
    spec = load_spec(directory / "spec.toml")
    frame = read_results(directory / "results.csv", spec)
    if "wga" not in set(frame["metric"]):
        also = " (the dataset has no group attribute: its cells measured worst_class_accuracy)" if "worst_class_accuracy" in set(frame["metric"]) else ""
        raise CrayonError(f"{directory}/results.csv: no cell measured WGA{also}; the report plots WGA, so it is not written, and results.csv holds every cell's metrics")
    wide = _question_columns(_wide(frame))
    original, cells = wide[wide["refiner"] == "original"], wide[wide["refiner"] != "original"]
    if cells.empty:
        raise CrayonError(f"{directory}/results.csv: no finished cell besides the original models")
    baseline = original["wga"].mean()
    cells = _paired(cells, original)
    all_cells = spec.cells()
    keys = {c.key for c in all_cells}
    records = [r for key in keys if (directory / "cells" / f"{key}.json").exists() and (r := read_record(directory / "cells" / f"{key}.json")) is not None]
    seconds = sum(r["seconds"] for r in records)
    expected = len(keys)
    text = [
        f"# {spec.title}",
        "",
        f"**Question.** {spec.question}" if spec.question else "",
        "",
        f"Grid: {', '.join(f'{a} {spec.grid.values(a)}' for a in spec.grid.varied())}; refiners {spec.refiners()}; seeds {spec.seeds()}. "
        f"{len(frame.groupby(['refiner', 'seed', *spec.grid.varied()], dropna=False))} of {len(all_cells)} cells in results.csv"
        + (f" ({expected} distinct computations)" if expected != len(all_cells) else "")
        + (f"; {seconds / 60:.1f} min of cell compute time." if records else "."),
        "",
        f"Original model (ERM): WGA {pct(*interval(original['wga'])[['mean', 'half']])}% over {len(original)} seeds "
        f"({', '.join(f'seed {int(r.seed)}: {pct(r.wga)}' for r in original.itertuples())}; dashed line in the plots). "
        "Numbers are means over seeds with 95% t-intervals, in %.",
        "",
    ]
    if "selection.tied" in cells and (cells["selection.tied"] > 0).any():
        tied = cells[cells["selection.tied"] > 0]
        text += [
            f"**Selection ties.** In {len(tied)} of {len(cells)} cells the selection rule's own validation metric could not separate the kept "
            f"epoch from others ({', '.join(f'{name}: {n}' for name, n in tied.groupby('refiner').size().items())}); the rule's tie-breakers "
            "decided (validation MGA, then accuracy, for `val-wga`; balanced accuracy for `val-accuracy`), as each cell's record in `cells/` says.",
            "",
        ]
    if "budget" in cells:
        text += _budget_section(cells, directory, baseline)
    if any(a in cells for a in NOISE_AXES):
        text += _noise_section(cells, directory, baseline)
    if cells["kappa"].notna().any():
        text += _agreement_section(cells.dropna(subset=["kappa"]), directory)
    options = [key for key in spec.grid.options if key in cells]
    if options:
        text += _options_section(cells, options, spec.base.selection.rule, directory)
    text += _paired_section(cells, [a for a in spec.grid.varied() if a in cells])
    path = directory / "report.md"
    path.write_text("\n".join(text).replace("\n\n\n", "\n\n") + "\n")
    return path
