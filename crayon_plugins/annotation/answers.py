"""People's answers on disk: the answers file the annotation page writes, and the CRAYON authors'
published lists.

**Answers file** (JSON lines, appended and fsynced one line per click, so nothing acknowledged is
lost when a tab, the server or the disk fails)::

    {"item": "train-0042", "question": "maps", "answer": "yes", "annotator": "alice", "time": "2026-11-24T10:03:12.481Z", "task": "5f1c…"}

``task`` is the key of the annotation task the answer was given in, which names the model and
maps (or concepts) people judged; the ``human`` source refuses answers about another model's.
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
from typing import BinaryIO

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crayon_plugins.annotation.records import Annotations, Answer, Question
from crayon_plugins.errors import DataError
from crayon_plugins.utils.progress import warn

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
    task: str | None = Field(default=None, min_length=1, max_length=128)

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
    """Append ``record`` to ``path`` as one line, fsynced before returning (callers that write from
    several threads hold a lock). A last line without its newline is first ended: kept if it is a
    whole record (a hand edit), otherwise, being what a failed write left, moved to
    ``<file>.damaged`` with a warning, so the new line never joins it."""
    line = record.model_dump_json(exclude={"answer"} if record.question == Question.ATTENTION else {"drawing"}) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with open(path, "a+b") as file:
        _end_last_line(path, file)
        file.write(line.encode())
        file.flush()
        os.fsync(file.fileno())
    if created:
        _sync_folder(path.parent)


def _end_last_line(path: Path, file: BinaryIO) -> None:
    size = file.seek(0, os.SEEK_END)
    start = size
    while start > 0:  # back to the last newline
        step = min(start, 4096)
        file.seek(start - step)
        found = file.read(step).rfind(b"\n")
        if found >= 0:
            start = start - step + found + 1
            break
        start -= step
    if start == size:
        return
    file.seek(start)
    tail = file.read()
    if _record(tail) is not None:
        file.write(b"\n")
        return
    damaged = path.with_name(path.name + ".damaged")
    with open(damaged, "ab") as aside:
        aside.write(tail + b"\n")
        aside.flush()
        os.fsync(aside.fileno())
    os.ftruncate(file.fileno(), start)
    warn(f"{path}: its last line was cut off ({len(tail)} bytes a write did not finish); moved them to {damaged}, every whole answer is kept")


def _sync_folder(folder: Path) -> None:
    """Make a file created in ``folder`` survive a power cut (its folder entry fsynced)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _record(raw: bytes) -> Record | None:
    try:
        return Record.model_validate_json(raw)
    except ValidationError:
        return None


def read_records(path: Path) -> list[Record]:
    """Every line of an answers file, in order; a missing file holds no records.

    What failed writes leave is read around, with a warning: an unfinished last line is skipped,
    and a line where a whole record follows the remains of an unfinished one (files written before
    appends ended such lines first) gives that record. Any other bad line is a :class:`DataError`
    naming the file and line."""
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as file:
        lines = file.read().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if (record := _record(line)) is not None:
            records.append(record)
        elif number == len(lines):  # no newline after it: a write that did not finish
            warn(f"{path}:{number}: skipped an unfinished last line ({len(line)} bytes); the next answer sets it aside")
        elif (record := _glued(line)) is not None:
            warn(f"{path}:{number}: read the answer that follows the remains of an unfinished write on this line")
            records.append(record)
        else:
            raise DataError(f"{path}:{number}: {_problem(line)}")
    return records


def _glued(line: bytes) -> Record | None:
    """The whole record at the end of ``line``, after the remains of an unfinished one."""
    start = line.rfind(b'{"item"')
    return _record(line[start:]) if start > 0 else None


def _problem(line: bytes) -> str:
    try:
        Record.model_validate_json(line)
    except ValidationError as error:
        problem = error.errors()[0]
        return f"{'.'.join(str(p) for p in problem['loc']) or 'line'}: {problem['msg']}"
    return "unreadable"


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
