"""An annotation task: the items a person judges, in the order the budget takes them, with their
pictures, in one folder the annotation page serves and Label Studio imports.

``<folder>/task.json`` lists the items (and ``.crayon-task`` marks the folder, which a dataset's
fingerprint then leaves out); ``images/``, ``overlays/`` (maps and attention) or
``sheets/`` (neurons) hold the pictures; ``answers.jsonl`` collects the answers
(:mod:`crayon_plugins.annotation.answers`) and ``drawings/<annotator>/`` the painted masks.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from crayon_plugins.annotation.records import Question
from crayon_plugins.annotation.sheets import render_sheet
from crayon_plugins.errors import CrayonError, DataError
from crayon_plugins.utils.files import TASK_MARK, write_atomically
from crayon_plugins.utils.progress import progress_bar

if TYPE_CHECKING:
    from crayon_plugins.data.image_set import ImageSet
    from crayon_plugins.model.concepts import NeuronConcepts

PROMPTS = {
    Question.MAPS: "Is the highlighted region the right thing to look at to recognise the class “{label}”?",
    Question.NEURONS: "Is the concept this neuron responds to (its strongest patches) relevant to the labels?",
    Question.ATTENTION: "Paint the region a model should look at to recognise the class “{label}”.",
}
"""The question as a person reads it (``{label}``: the image's class)."""

LOCK = "serving.lock"
"""The file in a task folder that the server serving it holds locked, naming itself."""


@dataclass(frozen=True)
class TaskItem:
    """One item: its id, the class a person should think of, its pictures (paths relative to the
    task folder, keyed ``image`` / ``overlay`` or ``sheet``), the class the model predicts for it and
    whether the model's map of it is empty (zero everywhere: the overlay shows the bare image)."""

    item: str
    label: str | None
    files: dict[str, str]
    predicted: str | None = None
    empty_map: bool = False


@dataclass(frozen=True)
class Task:
    """The items of one question, in annotation order, and the folder that holds them."""

    folder: Path
    question: Question
    key: str
    image_size: tuple[int, int]
    items: tuple[TaskItem, ...]

    @property
    def answers(self) -> Path:
        return self.folder / "answers.jsonl"

    def prompt(self, item: TaskItem) -> str:
        return PROMPTS[self.question].format(label=item.label)

    def write(self) -> None:
        data = {"question": self.question, "key": self.key, "image_size": list(self.image_size), "items": [asdict(i) for i in self.items]}
        write_atomically(self.folder / "task.json", json.dumps(data, indent=1))
        (self.folder / TASK_MARK).touch()

    @classmethod
    def read(cls, folder: Path) -> Task:
        path = folder / "task.json"
        try:
            data = json.loads(path.read_text())
            items = tuple(TaskItem(**i) for i in data["items"])
            return cls(folder, Question(data["question"]), data["key"], tuple(data["image_size"]), items)
        except FileNotFoundError:
            raise DataError(f"{path}: no annotation task here (crayon annotate serve or export prepares one)") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: not an annotation task ({type(error).__name__}: {error})") from None


@contextmanager
def held(folder: Path, holder: str) -> Iterator[None]:
    """Hold the task ``folder`` for one server (``holder``: its address) while the block runs: a
    second server would redraw the pictures under the first and write answers it does not see.
    :class:`CrayonError` naming the process and address that hold it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TASK_MARK).touch()
        lock = open(folder / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise CrayonError(f"{folder}: cannot create the task folder ({error.strerror or error})") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise CrayonError(f"{folder}: already served by {lock.read().strip() or 'another process'}; stop that page first, or give this one another --task folder") from None
        lock.truncate(0)
        lock.write(f"process {os.getpid()} on {socket.gethostname()} at {holder}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def overlay(image: torch.Tensor, saliency: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image with the saliency map, upsampled to it, blended in as a jet heat map."""
    height, width = image.shape[-2:]
    upsampled = F.interpolate(saliency[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    heat = matplotlib.colormaps["jet"](upsampled.numpy())[..., :3]
    blended = (1 - alpha) * image.permute(1, 2, 0).numpy() + alpha * heat
    return (blended.clip(0, 1) * 255).round().astype(np.uint8)


def _png(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_task(
    folder: Path,
    question: Question,
    key: str,
    train: ImageSet,
    chosen: Sequence[int],
    maps: Tensor | None = None,
    found: NeuronConcepts | None = None,
    classes: Tensor | None = None,
    predicted: Tensor | None = None,
) -> Task:
    """Write the task of ``question`` about the model ``key`` names to ``folder``: the ``chosen``
    items (indices into ``train``, or into ``found``'s neurons for :attr:`Question.NEURONS`) in
    that order, each with its pictures (the image and its overlay of ``maps``, or the neuron's
    concept sheet), drawn only where missing, the class its map explains (``classes``, default
    the labels; the human source matches answers to it) and the class the model ``predicted``. A folder holding answers about another model is an
    error; pictures of another model are drawn afresh."""
    _refuse_other_models_answers(folder, key)
    items = []
    with progress_bar(f"render {question} task", len(chosen)) as advance:
        for index in chosen:
            if question == Question.NEURONS:
                item = TaskItem(found.neuron_ids[index], None, {"sheet": f"sheets/{found.neuron_ids[index]}.png"})
                if not (folder / item.files["sheet"]).exists():
                    (folder / "sheets").mkdir(parents=True, exist_ok=True)
                    render_sheet(found, train, index, folder / item.files["sheet"])
            else:
                label = train.class_names[int((train.labels if classes is None else classes)[index])]
                guess = None if predicted is None else train.class_names[int(predicted[index])]
                files = {"image": f"images/{index:06d}.png", "overlay": f"overlays/{index:06d}.png"}
                item = TaskItem(train.ids[index], label, files, guess, bool(maps[index].max() <= 0))
                if not (folder / item.files["overlay"]).exists():
                    image = train.images[index]
                    _png((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), folder / item.files["image"])
                    _png(overlay(image, maps[index]), folder / item.files["overlay"])
            items.append(item)
            advance()
    task = Task(folder, question, key, train.image_size, tuple(items))
    task.write()
    return task


def _refuse_other_models_answers(folder: Path, key: str) -> None:
    if not (folder / "task.json").exists():
        return
    previous = Task.read(folder)
    if previous.key != key and previous.answers.exists() and previous.answers.stat().st_size:
        raise CrayonError(f"{folder}: holds answers about another model's {previous.question} (task {previous.key}, this configuration's is {key}); choose another --task folder")
    if previous.key != key:  # pictures of another model: drawn afresh
        for sub in ("images", "overlays", "sheets"):
            for path in (folder / sub).glob("*.png"):
                path.unlink()
