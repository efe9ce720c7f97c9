"""How each person answered in an answers file: their answer mix, pace, and agreement with the
others and with an oracle, as a table and as a figure beside the CRAYON paper's real annotators."""

from __future__ import annotations

import math
import statistics
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rich.table import Table

from crayon_plugins.annotation.answers import Record, latest
from crayon_plugins.annotation.paper_mix import REAL_ANNOTATORS
from crayon_plugins.annotation.records import CODES, Answer, Question

BREAK = 300
"""Seconds between two clicks of one person beyond which they count as a break, not answering time."""

COLOURS = {"yes": "tab:green", "maybe": "tab:grey", "no": "tab:red"}


@dataclass(frozen=True)
class AnnotatorSummary:
    """One person's answers: their count, the shares of each answer (NaN without answers), the median
    seconds between consecutive clicks (breaks left out), and Cohen's κ with the others and an oracle."""

    annotator: str
    answers: int
    yes: float
    no: float
    maybe: float
    seconds_per_answer: float
    kappa_others: float
    kappa_oracle: float


def _kappa(mine: Mapping[str, int], theirs: Mapping[str, int]) -> float:
    """Cohen's κ over the items both answered, nominal over no / yes / maybe; NaN without shared
    items or where it is undefined."""
    shared = [item for item in mine if item in theirs]
    if not shared:
        return math.nan
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns where κ is undefined (all answers alike)
        return float(cohen_kappa_score([mine[i] for i in shared], [int(theirs[i]) for i in shared], labels=list(CODES)))


def _seconds_per_answer(records: Sequence[Record]) -> float:
    """Median gap between time-ordered clicks, gaps over :data:`BREAK` left out; NaN below 2 gaps."""
    times = sorted(r.time for r in records)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    gaps = [gap for gap in gaps if gap <= BREAK]
    return statistics.median(gaps) if len(gaps) >= 2 else math.nan


def summarise_people(records: Sequence[Record], oracle: Mapping[str, int] | None = None) -> list[AnnotatorSummary]:
    """One :class:`AnnotatorSummary` per annotator, in order of first appearance: shares and κ from
    each person's latest answers, pace from all their clicks. ``oracle`` maps items to
    :class:`~crayon_plugins.annotation.records.Answer` codes; κ with it is over the items both answered.
    :class:`ValueError` if the records are not all about one of ``maps`` / ``neurons``."""
    questions = {r.question for r in records}
    if len(questions) > 1 or questions - {Question.MAPS, Question.NEURONS}:
        raise ValueError(f"summarise_people takes answers to one question, maps or neurons; got {', '.join(sorted(questions))}")
    people = list(dict.fromkeys(r.annotator for r in records))
    answered: dict[str, dict[str, int]] = {person: {} for person in people}
    for (person, item), record in latest(records).items():
        answered[person][item] = int(Answer.named(record.answer))

    summaries = []
    for person in people:
        mine = answered[person]
        counts = Counter(mine.values())
        share = {code: counts[code] / len(mine) if mine else math.nan for code in CODES}
        kappas = [_kappa(mine, theirs) for other, theirs in answered.items() if other != person]
        defined = [k for k in kappas if not math.isnan(k)]
        summaries.append(AnnotatorSummary(
            annotator=person,
            answers=len(mine),
            yes=share[Answer.YES],
            no=share[Answer.NO],
            maybe=share[Answer.MAYBE],
            seconds_per_answer=_seconds_per_answer([r for r in records if r.annotator == person]),
            kappa_others=statistics.fmean(defined) if defined else math.nan,
            kappa_oracle=_kappa(mine, oracle) if oracle is not None else math.nan,
        ))
    return summaries


def _number(value: float, form: str) -> str:
    return "—" if math.isnan(value) else format(value, form)


def summary_table(summaries: Sequence[AnnotatorSummary]) -> Table:
    """The summaries as a table: shares in percent, seconds per answer, κ; "—" where undefined."""
    table = Table("annotator", "answers", "yes", "no", "maybe", "s/answer", "κ others", "κ oracle")
    for s in summaries:
        table.add_row(
            s.annotator, str(s.answers),
            *(_number(100 * share, ".1f") + ("" if math.isnan(share) else "%") for share in (s.yes, s.no, s.maybe)),
            _number(s.seconds_per_answer, ".1f"), _number(s.kappa_others, ".2f"), _number(s.kappa_oracle, ".2f"),
        )
    return table


def answer_mix_figure(summaries: Sequence[AnnotatorSummary], question: Question, path: Path) -> list[str]:
    """Write ``path`` (PNG): a stacked bar of yes / maybe / no shares per annotator and, below a
    dashed line, per dataset of the CRAYON paper's real annotators. Returns the bar labels, top to
    bottom."""
    rows = [(f"{s.annotator} (n={s.answers})", (s.yes, s.maybe, s.no)) for s in summaries]
    rows += [
        (f"{name} (CRAYON paper, n={mix.maps_judged if question == Question.MAPS else mix.neurons_judged})", mix.shares(question))
        for name, mix in REAL_ANNOTATORS.items()
    ]
    labels = [label for label, _ in rows]
    shares = np.nan_to_num(np.array([share for _, share in rows], dtype=float))
    y = np.arange(len(rows)) + (np.arange(len(rows)) >= len(summaries)) * 0.6  # a gap before the paper's rows

    figure = Figure(figsize=(9, 1.6 + 0.4 * len(rows)), layout="constrained")
    axis = figure.add_subplot()
    left = np.zeros(len(rows))
    for column, answer in enumerate(("yes", "maybe", "no")):
        axis.barh(y, shares[:, column], left=left, color=COLOURS[answer], label=answer)
        left += shares[:, column]
    if summaries:
        axis.axhline(len(summaries) - 0.2, color="black", linestyle="--", linewidth=0.8)
    axis.set_yticks(y, labels)
    axis.invert_yaxis()
    axis.set(xlim=(0, 1), xlabel="share of answers", title="Answer mix: these annotators and the CRAYON paper's")
    figure.legend(loc="outside lower center", ncols=3)
    figure.savefig(path, dpi=100)
    return labels
