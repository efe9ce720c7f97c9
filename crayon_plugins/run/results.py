"""The results of a run: ``results.json`` and the printed table."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr
from rich.table import Table

from crayon_plugins.run.figures import curves_figure, reasonability_figure
from crayon_plugins.utils.files import write_atomically


class ResultRow(BaseModel):
    """One method's numbers (fractions in ``[0, 1]``); ``details`` holds what else it reports.

    With several seeds, ``metrics`` holds the mean over seeds and ``std`` the sample standard
    deviation of every number, and ``seeds`` each seed's own metrics. ``selection`` holds per seed
    the selection rule, the epoch its weights came from (``None`` for a refiner that does not train
    by epochs) and the validation curve.
    """

    method: str
    metrics: dict[str, Any]
    std: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    selection: list[dict[str, Any]] = Field(default_factory=list)
    seeds: list[dict[str, Any]] = Field(default_factory=list)


class Results(BaseModel):
    """What ``crayon run`` writes to ``DIR/results.json``."""

    dataset: str
    backbone: str
    seed: int
    seeds: list[int] = Field(default_factory=list)
    judge: str | None = Field(default=None, description="who judged the test maps for the reasonability metric")
    annotations: dict[str, int] = Field(default_factory=dict)
    neuron_annotations: dict[str, int] = Field(default_factory=dict)
    predicted_map_annotations: dict[str, int] = Field(default_factory=dict, description="yes / no / maybe about the maps of the original model's predicted classes, when a refiner used them")
    annotation_stats: dict[str, dict[str, float]] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict, description="per split, items left out because their image files could not be read")
    classes: list[str] = Field(default_factory=list, description="the class names, in the order of the models' outputs")
    image_size: list[int] = Field(default_factory=list, description="(H, W) of the images the models take")
    run: dict[str, Any] = Field(default_factory=dict, description="every component's resolved options, the configuration, package versions, device, threads")
    rows: list[ResultRow] = Field(default_factory=list)
    _models: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def models(self) -> dict[str, Any]:
        """Each method's model (a :class:`~crayon_plugins.model.classifier.Classifier`, in eval mode)
        by method name, for the run in this process (``results.json`` holds numbers only; the
        models are saved under ``OUT/models``)."""
        return self._models

    def row(self, method: str) -> ResultRow:
        return next(r for r in self.rows if r.method == method)

    def under(self, rule: str) -> Results:
        """These results as selection rule ``rule`` (one of ``[selection] also``) reports them: each
        row's numbers looked up from the same trainings (``selection[].rules``), mean ± std over
        seeds. A row without that lookup keeps no numbers and says why in ``details["no_lookup"]``."""
        rows = []
        for row in self.rows:
            found = [entry.get("rules", {}).get(rule) for entry in row.selection]
            if "refused" in row.details:
                rows.append(row)
                continue
            if not found or any(f is None or f["metrics"] is None for f in found):
                why = next((f["why"] for f in found if f and f.get("why")), f"no lookup for rule {rule!r} was recorded (run with [selection] also = [{rule!r}])")
                rows.append(row.model_copy(update={"metrics": {}, "std": {}, "seeds": [], "details": {**row.details, "no_lookup": why}}))
                continue
            kept = ("seed", "validation", "training")
            selection = [{**{k: e[k] for k in kept if k in e}, "rule": rule, "from_rule": e["rule"], **{k: v for k, v in f.items() if k != "metrics"}} for e, f in zip(row.selection, found)]
            per_seed = [f["metrics"] for f in found]
            if len(per_seed) == 1:
                rows.append(row.model_copy(update={"metrics": per_seed[0], "std": {}, "selection": selection}))
                continue
            mean, std = seeds_mean_and_std(per_seed)
            seeds = [{"seed": entry["seed"], "metrics": metrics} for entry, metrics in zip(selection, per_seed)]
            rows.append(row.model_copy(update={"metrics": mean, "std": std, "selection": selection, "seeds": seeds}))
        return self.model_copy(update={"rows": rows})

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/results.json`` atomically, ``reasonability-<method>.png`` for each row
        with a reasonability matrix (the first seed's, with several), ``curves-<method>.png`` for each
        with a validation curve and ``training.csv`` with every trainer's per-epoch log
        (:meth:`epoch_log`); returns the JSON's path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for row in self.rows:
            for selection in row.selection:
                if selection.get("validation"):
                    name = f"curves-{row.method}" + (f"-seed{selection['seed']}" if len(row.selection) > 1 else "")
                    curves_figure(selection, f"{row.method} · seed {selection['seed']} · validation", directory / f"{name}.png")
            first = row.seeds[0] if row.seeds else {"seed": self.seed, "metrics": row.metrics}
            if "reasonability_counts" in first["metrics"]:
                title = f"{row.method} · test split" + (f" · seed {first['seed']}" if row.seeds else "")
                reasonability_figure(first["metrics"]["reasonability_counts"], title, directory / f"reasonability-{row.method}.png")
        if logged := self.epoch_log():
            write_atomically(directory / "training.csv", "method,seed,epoch,split,name,value\n" + "".join(",".join(map(str, entry)) + "\n" for entry in logged))
        else:  # an earlier run's log into the same folder would belong to other models
            (directory / "training.csv").unlink(missing_ok=True)
        path = directory / "results.json"
        write_atomically(path, json.dumps(strict(self.model_dump()), indent=2, allow_nan=False) + "\n")
        return path

    def epoch_log(self) -> list[tuple[str, int, int, str, str, float]]:
        """Every trainer's per-epoch log as ``(method, seed, epoch, split, name, value)``: split
        ``train`` for its loss terms (per image), ``val`` for its validation metrics."""
        found = []
        for row in self.rows:
            for selection in row.selection:
                for split, key in (("train", "training"), ("val", "validation")):
                    for epoch, values in enumerate(selection.get(key) or [], 1):
                        found += [(row.method, selection["seed"], epoch, split, name, value) for name, value in values.items() if isinstance(value, (int, float))]
        return found

    def columns(self) -> list[str]:
        """The :data:`METRIC_COLUMNS` some row has a value for."""
        return [c for c, path in METRIC_COLUMNS.items() if any(value_at(r.metrics, path) is not None for r in self.rows)]

    def groups_note(self) -> str | None:
        """A sentence when WGA and MGA were taken over fewer groups than ``class × attribute`` has."""
        counts = {(r.metrics.get("groups_measured"), r.metrics.get("groups_total")) for r in self.rows if "groups_total" in r.metrics}
        partial = sorted((m, t) for m, t in counts if m is not None and t is not None and m < t)
        if not partial:
            return None
        measured, total = partial[0]
        return f"WGA and MGA over {measured:g} of {total:g} groups: the test split has no item of the others."

    def no_groups_note(self) -> str | None:
        """A sentence when some row was measured on a dataset without a group attribute."""
        if not any("worst_class_accuracy" in r.metrics or "class_accuracy" in r.metrics for r in self.rows):
            return None
        return "The dataset has no group attribute: WGA and MGA are not measured; worst class is the lowest per-class accuracy."

    def refused_note(self) -> str | None:
        """A sentence naming each refiner that was refused or failed (its row has no numbers)."""
        refused = [f"{r.method} ({r.details['refused']})" for r in self.rows if "refused" in r.details]
        return f"Refused: {'; '.join(refused)}." if refused else None

    def control_note(self) -> str | None:
        """A sentence saying which rows ``finetune`` is the control of (trained exactly as they
        were, without the annotations), and which have none that matches."""
        rows = [r for r in self.rows if "control" in r.details]
        if not rows:
            return None
        paired = [r.method for r in rows if r.details["control"]]
        unpaired = [r.method for r in rows if not r.details["control"]]
        return " ".join(
            filter(None, [f"finetune is the control of {', '.join(paired)}." if paired else None, f"No control trained as {', '.join(unpaired)} did." if unpaired else None])
        )

    def tie_note(self) -> str | None:
        """A sentence naming each row (and seed) whose selection rule's own metric could not separate
        the kept epoch from others, and what decided instead."""
        names = {"wga": "WGA", "mga": "MGA", "plain_accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}
        ties = []
        for row in self.rows:
            for entry in row.selection:
                if tie := entry.get("tie"):
                    seed = f" (seed {entry['seed']})" if len(self.seeds) > 1 and "seed" in entry else ""
                    decided = f"by validation {names.get(tie['decided_by'], tie['decided_by'])}" if tie["decided_by"] else "as the first of them: nothing separated them"
                    ties.append(
                        f"{row.method}{seed} kept epoch {entry['epoch']} of epochs {', '.join(map(str, tie['epochs']))}, tied at "
                        f"{100 * tie['value']:.1f} % validation {names.get(tie['metric'], tie['metric'])}, {decided}"
                    )
        return f"The selection rule's own metric tied: {'; '.join(ties)}." if ties else None

    def lookup_note(self) -> str | None:
        """For results :meth:`under` another rule: that every method started from the original
        model the run's own rule kept, and which rows have no lookup."""
        run_rules = sorted({e["from_rule"] for r in self.rows for e in r.selection if "from_rule" in e})
        missing = [f"{r.method} ({r.details['no_lookup']})" for r in self.rows if "no_lookup" in r.details]
        said = [f"Looked up from the same trainings as the run's rule {', '.join(f'`{r}`' for r in run_rules)}, from whose original model every method started." if run_rules else None]
        return " ".join(filter(None, [*said, f"No numbers: {'; '.join(missing)}." if missing else None])) or None

    def notes(self) -> list[str]:
        """The sentences under the table."""
        return [note for note in (self.no_groups_note(), self.groups_note(), self.control_note(), self.tie_note(), self.lookup_note(), self.refused_note()) if note]

    def table(self) -> Table:
        """Method, WGA, MGA (worst class without a group attribute) and accuracy in % (mean ± standard
        deviation over seeds when there are several), one row per method; the reasonable-accurate (RA) and unreasonable-accurate (UA)
        shares if measured; neurons pruned if any were."""
        title = " · ".join(part.split("(", 1)[0] for part in (self.dataset, self.backbone))
        seeds = f"seeds {', '.join(map(str, self.seeds))}" if len(self.seeds) > 1 else f"seed {self.seed}"
        table = Table(title=f"{title} · {seeds}", caption=" ".join(self.notes()) or None)
        table.add_column("method")
        columns = self.columns()
        for column in columns:
            table.add_column(column, justify="right")
        pruned = any(row.details.get("neurons_pruned") for row in self.rows)
        if pruned:
            table.add_column("pruned", justify="right")
        for row in self.rows:
            texts = [percent(value_at(row.metrics, METRIC_COLUMNS[c]), value_at(row.std, METRIC_COLUMNS[c])) for c in columns]
            table.add_row(row.method, *texts, *([str(row.details.get("neurons_pruned", "—"))] if pruned else []))
        return table


METRIC_COLUMNS = {
    "WGA": ("wga",),
    "MGA": ("mga",),
    "worst class": ("worst_class_accuracy",),
    "accuracy": ("accuracy",),
    "RA": ("reasonability", "reasonable-accurate"),
    "UA": ("reasonability", "unreasonable-accurate"),
}
"""Table column → where its value sits in a row's metrics; all are shares shown in %. ``worst class``
is measured instead of WGA and MGA on a dataset without a group attribute."""


def strict(value: Any) -> Any:
    """``value`` with every inf and nan as ``None``, for strict JSON readers (``JSON.parse``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def value_at(metrics: dict, path: tuple[str, ...]) -> float | None:
    """The number at ``path`` in nested ``metrics``, or ``None``."""
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def percent(mean: float | None, std: float | None = None) -> str:
    """``"95.80"``, ``"95.80 ± 1.20"`` with a standard deviation, ``"—"`` for nothing."""
    if mean is None:
        return "—"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def mean_and_std(found: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and sample standard deviation of every number in the nested metrics ``found`` (one dict
    per seed, same keys); a number missing or NaN in any seed gives NaN, a key whose values are not
    numbers is left out, and with one seed there is no deviation."""
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key, value in found[0].items():
        values = [metrics.get(key) for metrics in found]
        if isinstance(value, dict):
            if all(isinstance(v, dict) for v in values):
                mean[key], std[key] = mean_and_std(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers = [float(v) if isinstance(v, (int, float)) else math.nan for v in values]
            if any(math.isnan(n) for n in numbers):
                mean[key] = std[key] = math.nan
            else:
                mean[key] = statistics.fmean(numbers)
                if len(numbers) > 1:  # one value has no deviation, not a deviation of 0
                    std[key] = statistics.stdev(numbers)
    return mean, std


def seeds_mean_and_std(found: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`mean_and_std` of a method's metrics over seeds, without the counts of the
    reasonability matrix (each seed's are in its own metrics)."""
    mean, std = mean_and_std(found)
    mean.pop("reasonability_counts", None)
    std.pop("reasonability_counts", None)
    return mean, std
