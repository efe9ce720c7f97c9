"""Label Studio round trip: tasks and a labeling config to import, and answers read back from its
JSON export (https://labelstud.io/guide/task_format, https://labelstud.io/guide/export).

Questions ``maps`` (an image and its saliency overlay side by side, with the class name) and
``neurons`` (a neuron's concept sheet) are asked as one required single choice named ``answer``:
yes / no / maybe; ``attention`` as a brush (``region``) painting on the image, beside the overlay:
the painted regions come back as masks (:mod:`crayon_plugins.annotation.brush` reads Label Studio's
brush code).
Each task's data carries the item id (``item``) and the key of the annotation task
(``task_key``: the model and maps people judge), which the import writes onto every answer.
Predictions (the simulated annotator's answers, with a ``score``) pre-select a choice in Label
Studio; an answer submitted with that choice unchanged is counted, reported and, on request, left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from crayon_plugins.annotation import brush
from crayon_plugins.annotation.answers import ANNOTATOR_NAME, Record
from crayon_plugins.annotation.records import Answer, Question
from crayon_plugins.errors import ConfigError, DataError
from crayon_plugins.utils.files import read_text, write_atomically

_IMAGES = {Question.MAPS: ("image", "overlay"), Question.NEURONS: ("sheet",), Question.ATTENTION: ("image", "overlay")}
"""Each question's image data keys; the choices label the last one, the brush paints on the first."""

_UNNAMED = re.compile(r"[^A-Za-z0-9_.@-]")
"""Characters an annotator name may not hold (see :data:`~crayon_plugins.annotation.answers.ANNOTATOR_NAME`)."""

_HEADERS = {
    Question.MAPS: "Does the highlighted region show the right thing to recognise this class?",
    Question.NEURONS: "Is this neuron's concept relevant to the label?",
    Question.ATTENTION: "Paint the region a model should look at to recognise this class (left); right: where the model looks now.",
}


@dataclass(frozen=True)
class ExportItem:
    """One task to export: the item id, its image paths or URLs by data key (``image`` and
    ``overlay`` for ``maps``, ``sheet`` for ``neurons``) and, for ``maps``, the class name."""

    item: str
    files: dict[str, str] = field(default_factory=dict)
    label: str | None = None


BRUSH_LABEL = "look here"
"""The one brush label of the drawing question (its regions are where a model should look)."""


def _images(question: Question) -> tuple[str, ...]:
    if question not in _IMAGES:
        raise ConfigError(f"Label Studio tasks ask question maps, neurons or attention, not {str(question)!r}")
    return _IMAGES[question]


def labeling_config(question: Question) -> str:
    """The labeling config XML asking ``question`` (``maps`` or ``neurons``): the pictures side by
    side, so the question and its answers fit one screen (1280 × 900) without scrolling."""
    images = _images(question)
    lines = ["<View>", f'  <Header value="{_HEADERS[question]}"/>']
    if question != Question.NEURONS:
        lines.append('  <Text name="label" value="$label"/>')
    lines.append('  <View style="display: flex; gap: 12px; align-items: flex-start">')
    lines += [f'    <View style="flex: 1; min-width: 0"><Image name="{key}" value="${key}" maxWidth="100%" maxHeight="560px"/></View>' for key in images]
    lines.append("  </View>")
    if question == Question.ATTENTION:
        lines.append(f'  <BrushLabels name="region" toName="{images[0]}">')
        lines.append(f'    <Label value="{BRUSH_LABEL}" background="#ff00a0"/>')
        lines += ["  </BrushLabels>", "</View>", ""]
        return "\n".join(lines)
    lines.append(f'  <Choices name="answer" toName="{images[-1]}" choice="single" showInLine="true" required="true">')
    lines += [f'    <Choice value="{answer}"/>' for answer in ("yes", "no", "maybe")]
    lines += ["  </Choices>", "</View>", ""]
    return "\n".join(lines)


def write_tasks(
    out: Path, question: Question, items: Sequence[ExportItem], key: str, predictions: Mapping[str, str] | None = None, model_version: str = "oracle"
) -> tuple[Path, Path]:
    """Write ``out/tasks.json`` (one task per item, in the budget's order, each naming the
    annotation task ``key``) and ``out/labeling-config.xml``; return both paths. ``predictions``
    (item id → yes / no / maybe) pre-select those items' answers; each prediction's ``score`` is
    its item's place in the order, scaled into (0, 1), so Label Studio's uncertainty sampling (the
    lowest score first) asks in the budget's order."""
    images = _images(question)
    tasks = []
    for position, item in enumerate(items):
        if missing := [name for name in images if name not in item.files]:
            raise ValueError(f"item {item.item!r} has no {', '.join(missing)} file for question {question}")
        data: dict[str, Any] = {"item": item.item, "task_key": key, **item.files}
        if item.label is not None:
            data["label"] = item.label
        task: dict[str, Any] = {"data": data}
        if predictions is not None and item.item in predictions:
            answer = predictions[item.item]
            if Answer.named(answer) is None:
                raise ValueError(f"prediction {answer!r} for item {item.item!r} is not yes, no or maybe")
            result = {"from_name": "answer", "to_name": images[-1], "type": "choices", "value": {"choices": [answer]}}
            task["predictions"] = [{"model_version": model_version, "score": (position + 0.5) / len(items), "result": [result]}]
        tasks.append(task)
    out.mkdir(parents=True, exist_ok=True)
    tasks_path, config_path = out / "tasks.json", out / "labeling-config.xml"
    write_atomically(tasks_path, json.dumps(tasks, indent=1) + "\n")
    write_atomically(config_path, labeling_config(question))
    return tasks_path, config_path


def _annotator(completed_by: Any) -> str:
    """``completed_by`` as an annotator name: the user's full e-mail when the export gives the user
    object (``alice@lab-a.org`` and ``alice@lab-b.org`` stay two people), else ``user-<id>``."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and ANNOTATOR_NAME.match(email):
            return email
        completed_by = completed_by.get("id")
    if completed_by is None or isinstance(completed_by, (dict, list)):
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


def _regions(annotation: dict[str, Any]) -> list[dict[str, Any]]:
    """The annotation's result regions; none when it was cancelled (a skip)."""
    if annotation.get("was_cancelled"):
        return []
    result = annotation.get("result") or []
    if not isinstance(result, list) or not all(isinstance(region, dict) for region in result):
        raise ValueError("result is not a list of regions")
    return result


def _choice(annotation: dict[str, Any]) -> tuple[str | None, bool]:
    """The annotation's yes / no / maybe (None when it has none: cancelled, skipped, no choice), and
    whether it is a prediction's choice submitted unchanged (its ``origin`` is ``prediction``)."""
    result = _regions(annotation)
    chosen = [region for region in result if region.get("type") == "choices" and region.get("from_name") == "answer"]
    choices = []
    for region in chosen:
        value = region.get("value")
        found = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(found, list | None):
            raise ValueError("a choices region's value.choices is not a list")
        choices += found or []
    if len(choices) > 1:
        raise ValueError(f"{len(choices)} choices {choices}, expected one")
    if choices and (not isinstance(choices[0], str) or Answer.named(choices[0]) is None):
        raise ValueError(f"choice {choices[0]!r} is not yes, no or maybe")
    return (choices[0], any(region.get("origin") == "prediction" for region in chosen)) if choices else (None, False)


def _drawing(annotation: dict[str, Any]) -> np.ndarray | None:
    """The region an annotation painted, ``(H, W)`` bool (the union of its brush regions), or None
    when it painted nothing or was cancelled."""
    painted = None
    for region in _regions(annotation):
        if region.get("type") != "brushlabels" or region.get("from_name") != "region":
            continue
        value, width, height = region.get("value"), region.get("original_width"), region.get("original_height")
        rle = value.get("rle") if isinstance(value, dict) else None
        if not (isinstance(rle, list) and isinstance(width, int) and isinstance(height, int)):
            raise ValueError("a brush region lacks value.rle, original_width or original_height")
        mask = brush.decode(rle, height, width)
        painted = mask if painted is None else painted | mask
    return painted


@dataclass
class Imported:
    """What an export held: its answers sorted by time (then task order), the painted regions of
    the drawing question by the path each record names (relative to the answers file), the tasks
    without an item id left out (Label Studio makes such tasks from a storage's other files), and
    who submitted how many prefilled answers unchanged (left out of ``records`` when asked)."""

    records: list[Record]
    drawings: dict[str, np.ndarray] = field(default_factory=dict)
    foreign_tasks: int = 0
    prefilled: dict[str, int] = field(default_factory=dict)


def read_export(path: Path, question: Question = Question.MAPS, drop_prefilled: bool = False) -> Imported:
    """The answers in a Label Studio JSON export, as records about ``question``. Cancelled or skipped
    annotations, tasks without annotations and predictions give none; tasks without ``data.item``
    are counted and left out. :class:`DataError` naming the file, task (counted from 0) and
    annotation id when the file cannot be read, is not a list of tasks, or an annotation is malformed."""
    _images(question)
    tasks = _json(path)
    if not isinstance(tasks, list):
        raise DataError(f"{path}: not a Label Studio JSON export (a list of tasks) but a JSON {type(tasks).__name__}")
    imported, found = Imported([]), []
    for index, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        item = data.get("item") if isinstance(data, dict) else None
        if not isinstance(item, str) or not item:
            imported.foreign_tasks += 1
            continue
        key = data.get("task_key") if isinstance(data.get("task_key"), str) and data.get("task_key") else None
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise DataError(f"{path}: task {index} (item {item!r}): annotations is not a list")
        for annotation in annotations:
            where = f"{path}: task {index} (item {item!r})" + (f": annotation {annotation['id']}" if isinstance(annotation, dict) and "id" in annotation else "")
            try:
                if not isinstance(annotation, dict):
                    raise ValueError("is not an object")
                if question == Question.ATTENTION:
                    answer, prefilled, painted = None, False, _drawing(annotation)
                    if painted is None:
                        continue
                else:
                    (answer, prefilled), painted = _choice(annotation), None
                    if answer is None:
                        continue
                time = _time(annotation)
                annotator = _annotator(annotation.get("completed_by"))
                drawing = None
                if painted is not None:
                    number = annotation.get("id") if isinstance(annotation.get("id"), int) else len(found)
                    drawing = f"drawings/{annotator}/{index:06d}-{number}.png"
                    imported.drawings[drawing] = painted
                record = Record(item=item, question=question, answer=answer, drawing=drawing, annotator=annotator, time=time, task=key)
            except (ValueError, ValidationError) as error:
                raise DataError(f"{where}: {error}") from None
            if prefilled:
                imported.prefilled[annotator] = imported.prefilled.get(annotator, 0) + 1
                if drop_prefilled:
                    continue
            found.append((time, index, record))
    found.sort(key=lambda entry: entry[:2])
    imported.records = [record for _, _, record in found]
    return imported


def _json(path: Path) -> Any:
    """The JSON in the file ``path``; an error naming it when it cannot be read."""
    try:
        return json.loads(read_text(path, "Label Studio export"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error})") from None
