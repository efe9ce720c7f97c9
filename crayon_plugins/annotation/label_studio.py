"""Label Studio round trip: tasks and a labeling config to import, and answers read back from its
JSON export (https://labelstud.io/guide/task_format, https://labelstud.io/guide/export).

Questions ``maps`` (an image and its saliency overlay, with the class name) and ``neurons`` (a
neuron's concept sheet) are asked as one required single choice named ``answer``: yes / no / maybe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crayon_plugins.annotation.answers import Record
from crayon_plugins.annotation.records import Answer, Question
from crayon_plugins.errors import ConfigError, DataError

_IMAGES = {Question.MAPS: ("image", "overlay"), Question.NEURONS: ("sheet",)}
"""Each question's image data keys; the choices label the last one."""

_UNNAMED = re.compile(r"[^A-Za-z0-9_.@-]")
"""Characters an annotator name may not hold (see :data:`~crayon_plugins.annotation.answers.ANNOTATOR_NAME`)."""

_HEADERS = {
    Question.MAPS: "Does the highlighted region show the right thing to recognise this class?",
    Question.NEURONS: "Is this neuron's concept relevant to the label?",
}


@dataclass(frozen=True)
class ExportItem:
    """One task to export: the item id, its image paths or URLs by data key (``image`` and
    ``overlay`` for ``maps``, ``sheet`` for ``neurons``) and, for ``maps``, the class name."""

    item: str
    files: dict[str, str] = field(default_factory=dict)
    label: str | None = None


def _images(question: Question) -> tuple[str, ...]:
    if question not in _IMAGES:
        raise ConfigError(f"Label Studio tasks ask question maps or neurons, not {str(question)!r}")
    return _IMAGES[question]


def labeling_config(question: Question) -> str:
    """The labeling config XML asking ``question`` (``maps`` or ``neurons``)."""
    images = _images(question)
    lines = ["<View>", f'  <Header value="{_HEADERS[question]}"/>']
    if question == Question.MAPS:
        lines.append('  <Text name="label" value="$label"/>')
    lines += [f'  <Image name="{key}" value="${key}"/>' for key in images]
    lines.append(f'  <Choices name="answer" toName="{images[-1]}" choice="single" showInLine="true" required="true">')
    lines += [f'    <Choice value="{answer}"/>' for answer in ("yes", "no", "maybe")]
    lines += ["  </Choices>", "</View>", ""]
    return "\n".join(lines)


def write_tasks(out: Path, question: Question, items: Sequence[ExportItem], predictions: Mapping[str, str] | None = None, model_version: str = "oracle") -> tuple[Path, Path]:
    """Write ``out/tasks.json`` (one task per item, in order) and ``out/labeling-config.xml``; return
    both paths. ``predictions`` (item id → yes / no / maybe) pre-selects those items' answers."""
    images = _images(question)
    tasks = []
    for item in items:
        if missing := [key for key in images if key not in item.files]:
            raise ValueError(f"item {item.item!r} has no {', '.join(missing)} file for question {question}")
        data: dict[str, Any] = {"item": item.item, **item.files}
        if item.label is not None:
            data["label"] = item.label
        task: dict[str, Any] = {"data": data}
        if predictions is not None and item.item in predictions:
            answer = predictions[item.item]
            if Answer.named(answer) is None:
                raise ValueError(f"prediction {answer!r} for item {item.item!r} is not yes, no or maybe")
            result = {"from_name": "answer", "to_name": images[-1], "type": "choices", "value": {"choices": [answer]}}
            task["predictions"] = [{"model_version": model_version, "result": [result]}]
        tasks.append(task)
    out.mkdir(parents=True, exist_ok=True)
    tasks_path, config_path = out / "tasks.json", out / "labeling-config.xml"
    tasks_path.write_text(json.dumps(tasks, indent=1) + "\n", encoding="utf-8")
    config_path.write_text(labeling_config(question), encoding="utf-8")
    return tasks_path, config_path


def _annotator(completed_by: Any) -> str:
    """``completed_by`` (a user id, or a user object) as an annotator name: the email's local part,
    else ``user-<id>``."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and (name := _UNNAMED.sub("-", email.split("@")[0]).lstrip("_.@-")[:64]):
            return name
        completed_by = completed_by.get("id")
    if completed_by is None:
        raise ValueError("has no completed_by user")
    return _UNNAMED.sub("-", f"user-{completed_by}")[:64]


def _time(annotation: dict[str, Any]) -> datetime:
    """The annotation's ``updated_at`` (else ``created_at``), UTC when it names no zone."""
    text = annotation.get("updated_at") or annotation.get("created_at")
    if not isinstance(text, str):
        raise ValueError("has no updated_at or created_at time")
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not an ISO date and time") from None
    return time if time.tzinfo else time.replace(tzinfo=timezone.utc)


def _choice(annotation: dict[str, Any]) -> str | None:
    """The annotation's yes / no / maybe, or None when it has none (cancelled, skipped, no choice)."""
    if annotation.get("was_cancelled"):
        return None
    choices = [c for region in annotation.get("result") or [] if region.get("type") == "choices" and region.get("from_name") == "answer" for c in region.get("value", {}).get("choices") or []]
    if len(choices) > 1:
        raise ValueError(f"{len(choices)} choices {choices}, expected one")
    if choices and Answer.named(choices[0]) is None:
        raise ValueError(f"choice {choices[0]!r} is not yes, no or maybe")
    return choices[0] if choices else None


def read_export(path: Path, question: Question = Question.MAPS) -> list[Record]:
    """The answers in a Label Studio JSON export, as records about ``question``, sorted by time
    (then task order). Cancelled or skipped annotations, tasks without annotations and
    predictions give none. :class:`DataError` naming the file, task (counted from 0) and
    annotation id when the file is not a list of tasks, a task has no ``data.item`` or a choice
    is not yes / no / maybe."""
    _images(question)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error})") from None
    if not isinstance(tasks, list):
        raise DataError(f"{path}: not a Label Studio JSON export (a list of tasks) but a JSON {type(tasks).__name__}")
    found: list[tuple[datetime, int, Record]] = []
    for index, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        item = data.get("item") if isinstance(data, dict) else None
        if not isinstance(item, str) or not item:
            raise DataError(f"{path}: task {index}: data.item is missing or not a text id (tasks must come from crayon annotate export)")
        for annotation in task.get("annotations") or []:
            where = f"{path}: task {index} (item {item!r})" + (f": annotation {annotation['id']}" if "id" in annotation else "")
            try:
                if (answer := _choice(annotation)) is None:
                    continue
                time = _time(annotation)
                annotator = _annotator(annotation.get("completed_by"))
            except ValueError as error:
                raise DataError(f"{where}: {error}") from None
            found.append((time, index, Record(item=item, question=question, answer=answer, annotator=annotator, time=time)))
    found.sort(key=lambda entry: entry[:2])
    return [record for _, _, record in found]
