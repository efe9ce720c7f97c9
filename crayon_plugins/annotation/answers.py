"""People's answers on disk: the answers file the annotation page writes, and the CRAYON authors'
published lists.

**Answers file** (JSON lines, appended one line per click, so nothing is lost when a tab or the
server dies)::

    {"item": "train-0042", "question": "maps", "answer": "yes", "annotator": "alice", "time": "2026-11-24T10:03:12.481Z"}

``question`` is ``maps`` (the default when absent), ``neurons`` or ``attention``; ``answer`` is
``yes`` / ``no`` / ``maybe``, or ``null`` for an undone answer; a drawing (the ``attention``
question) has ``drawing``, the PNG mask's path relative to the file, instead of ``answer``. A
person's later line about an item replaces the earlier one.

**Published lists** (poloclub/crayon ``annotation/``): a JSON list of ``"yes"`` / ``"no"`` /
``"maybe"``, one per training image in split order (``*_gradcam.json``), or of booleans, one per
neuron (``*_neuron.json``, true = relevant). They name no items and no annotator, so they cover the
whole split, in order, from one annotator named after the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crayon_plugins.annotation.records import Annotations, Answer, Question
from crayon_plugins.errors import DataError

ANNOTATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
"""What an annotator may be called: letters, digits and ``_ . @ -``, at most 64 characters."""


class Record(BaseModel):
    """One line of an answers file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    item: str = Field(min_length=1)
    question: Question = Question.MAPS
    answer: str | None = Field(default=None, pattern="^(yes|no|maybe)$")
    drawing: str | None = Field(default=None, min_length=1)
    annotator: str = Field(pattern=ANNOTATOR_NAME.pattern)
    time: datetime

    @model_validator(mode="after")
    def _fits_question(self) -> Record:
        if self.question == Question.ATTENTION and self.answer is not None:
            raise ValueError("a drawing (question attention) has no yes / no / maybe answer")
        if self.question != Question.ATTENTION and self.drawing is not None:
            raise ValueError(f"question {self.question} takes an answer, not a drawing")
        return self


def now() -> datetime:
    return datetime.now(timezone.utc)


def append(path: Path, record: Record) -> None:
    """Append ``record`` to ``path`` as one line and flush it to disk before returning (callers
    that write from several threads hold a lock)."""
    line = record.model_dump_json(exclude={"answer"} if record.question == Question.ATTENTION else {"drawing"}) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def read_records(path: Path) -> list[Record]:
    """Every line of an answers file, in order. :class:`DataError` naming the file and line of the
    first bad one; a missing file holds no records."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                records.append(Record.model_validate_json(line))
            except ValidationError as error:
                problem = error.errors()[0]
                where = ".".join(str(p) for p in problem["loc"]) or "line"
                raise DataError(f"{path}:{number}: {where}: {problem['msg']}") from None
    return records


def latest(records: Iterable[Record]) -> dict[tuple[str, str], Record]:
    """Each (annotator, item)'s last record, in the order each pair was last answered; undone
    answers (``answer`` and ``drawing`` both ``null``) are left out."""
    last: dict[tuple[str, str], Record] = {}
    for record in records:
        key = (record.annotator, record.item)
        last.pop(key, None)
        last[key] = record
    return {key: r for key, r in last.items() if r.answer is not None or r.drawing is not None}


def is_published_list(path: Path) -> bool:
    """Whether ``path`` holds a JSON list (the authors' format) rather than JSON lines."""
    with open(path, encoding="utf-8") as file:
        head = file.read(64).lstrip()
    return head.startswith("[")


def questions_in(path: Path) -> set[Question]:
    """The questions a file answers: a published list of strings answers ``maps``, of booleans
    ``neurons``; an answers file those its lines name."""
    if is_published_list(path):
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not JSON ({error})") from None
        return {Question.NEURONS if values and isinstance(values[0], bool) else Question.MAPS}
    if not (records := read_records(path)):
        raise DataError(f"{path}: holds no answers yet")
    return {record.question for record in records}


def read_published(path: Path, ids: Sequence[str], question: Question) -> Annotations:
    """An authors' list as answers about ``ids`` (in order), from annotator ``<file stem>``.

    ``question`` ``"maps"`` expects yes / no / maybe strings, ``"neurons"`` booleans. :class:`DataError`
    naming the file and the first bad entry, or the lengths, when they do not fit."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error})") from None
    if len(values) != len(ids):
        raise DataError(f"{path}: {len(values)} answers, but the split has {len(ids)} {'images' if question == Question.MAPS else 'neurons'}; a published list has one per item, in order")
    codes = []
    for index, value in enumerate(values):
        if question == Question.NEURONS and isinstance(value, bool):
            codes.append(int(Answer.YES if value else Answer.NO))
        elif question == Question.MAPS and Answer.named(value) is not None:
            codes.append(int(Answer.named(value)))
        else:
            expected = "true or false" if question == Question.NEURONS else '"yes", "no" or "maybe"'
            raise DataError(f"{path}: entry {index} is {value!r}, expected {expected}")
    return Annotations(tuple(ids), torch.tensor(codes, dtype=torch.int64), (path.stem,) * len(ids))


def read_answers(path: Path, ids: Sequence[str], question: Question = Question.MAPS) -> list[Record]:
    """The latest answer of each annotator about each item in an answers file's lines about
    ``question``, checked against the split's ``ids``: :class:`DataError` naming the file, line and
    item of the first unknown one."""
    known = set(ids)
    records = read_records(path)
    for number, record in enumerate(records, 1):
        if record.question == question and record.item not in known:
            raise DataError(f"{path}: line {number} answers item {record.item!r}, which is not in the split ({len(ids)} items, e.g. {ids[0]!r})" if ids else f"{path}: line {number} answers item {record.item!r}, and the split is empty")
    return list(latest(r for r in records if r.question == question).values())


def annotations(records: Sequence[Record]) -> Annotations:
    """Answer records as :class:`~crayon_plugins.annotation.records.Annotations` (drawings left out)."""
    chosen = [r for r in records if r.answer is not None]
    return Annotations(
        tuple(r.item for r in chosen),
        torch.tensor([int(Answer.named(r.answer)) for r in chosen], dtype=torch.int64),
        tuple(r.annotator for r in chosen),
    )
