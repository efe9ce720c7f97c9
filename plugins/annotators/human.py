"""``human``: people's answers, read from files (see :mod:`crayon_plugins.annotation.answers`).

Configure it where a simulated annotator would go::

    [annotator]
    name = "human"
    answers = ["annotation/maps/answers.jsonl", "annotation/attention/answers.jsonl"]

    [neuron_annotator]
    name = "human"
    answers = "waterbirds_neuron.json"     # a published list is read unchanged

It answers the questions its files hold (an answers file names each line's question; a published
list of strings answers maps, of booleans neurons). Each person in the files is one panel member,
so aggregation, agreement and budgets work as with oracles (keep ``[panel] size = 1``: the panel
comes from the files). An answer about a map counts only for the class whose map people saw: the
annotation task beside its file (``task.json``) names it per item; without one, the label's.
Items nobody answered are unanswered, not *maybe*. Every answer the page or an import writes
names the task it was given in, that is the model and maps (or concepts) people judged: answers
about another model are an error unless ``accept_other_models = true``, which uses them and reports
how many. Relative paths are relative to the working directory.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import Field, field_validator

from crayon_plugins.annotation import answers as answer_files
from crayon_plugins.annotation.task import Task
from crayon_plugins.api import Annotations, AnnotationSource, AttentionMaps, DataError, MapsToJudge, NeuronsToJudge, Params, Question, hookimpl
from crayon_plugins.model.checkpoints import file_digest
from crayon_plugins.utils.progress import warn


class HumanAnswers(AnnotationSource):
    """Answers people gave, from answers files (JSON lines, several annotators each) or the CRAYON
    authors' published lists (whole split, in order). An answer about an item outside the split, or
    a published list of another length, is a :class:`~crayon_plugins.errors.DataError` naming the
    file and the first offending entry."""

    whole_split = True

    class Params(Params):
        answers: list[str] = Field(min_length=1, description="answers files (JSON lines, from the annotation page or crayon annotate import) or published lists")
        accept_other_models: bool = Field(False, description="use answers recorded about another model's maps or concepts (the count per file is reported); by default they are an error")

        @field_validator("answers", mode="before")
        @classmethod
        def _one_or_many(cls, value: str | list[str]) -> list[str]:
            return [value] if isinstance(value, str) else value

    @cached_property
    def _questions(self) -> dict[Path, set[str]]:
        """Each file and the questions it answers (read once; a missing file is an error)."""
        paths = [Path(p) for p in self.params.answers]
        if missing := [p for p in paths if not p.is_file()]:
            raise DataError(f"human: answers file {missing[0]} does not exist (a relative path is relative to the working directory, {Path.cwd()})", "answers")
        return {path: answer_files.questions_in(path) for path in paths}

    def judges(self) -> frozenset[str]:
        return frozenset(q for found in self._questions.values() for q in found)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self._questions:
            digest.update(f"{path}={file_digest(path)};".encode())
            if (task := path.parent / "task.json").is_file():  # which class each answered map showed
                digest.update(f"{task}={file_digest(task)};".encode())
        return digest.hexdigest()

    def _files(self, question: Question) -> list[Path]:
        return [path for path, found in self._questions.items() if question in found]

    def _read(self, path: Path, ids: tuple[str, ...], question: Question, key: str) -> list[answer_files.Record]:
        """``path``'s latest answers to ``question`` about ``ids``, checked to be about the model
        and maps ``key`` names (when known)."""
        records = answer_files.read_answers(path, ids, question)
        if not key or not (other := [r for r in records if r.task is not None and r.task != key]):
            return records
        about = f"{len(other)} of its {len(records)} {question} answers are about another model's {'concepts' if question == Question.NEURONS else 'maps'} (task {other[0].task}; this run's is {key})"
        if not self.params.accept_other_models:
            raise DataError(f"human: {path}: {about}; answer this model's task (crayon annotate serve with this configuration), or set accept_other_models = true to use them anyway", "answers")
        warn(f"human: {path}: {about}; used, as accept_other_models = true asks")
        return records

    def _answers(self, ids: tuple[str, ...], question: Question, key: str, asked: dict[str, tuple[str, str]] | None = None) -> Annotations:
        """Every file's answers to ``question`` about ``ids`` (the items ``key`` names); with ``asked`` (item → the class
        whose map is asked about), only answers given about that class's map (:func:`shown_classes`)."""
        parts = []
        for path in self._files(question):
            if answer_files.is_published_list(path):
                found = answer_files.read_published(path, ids, question)
            else:
                found = answer_files.annotations(self._read(path, ids, question, key))
            parts.append(found if asked is None else about_classes(found, shown_classes(path), asked))
        pairs = [(item, who) for found in parts for item, who in zip(found.item_ids, found.annotators)]
        if len(set(pairs)) != len(pairs):
            seen = set()
            item, who = next(p for p in pairs if p in seen or seen.add(p))
            raise DataError(f"human: annotator {who!r} answered item {item!r} in more than one of {', '.join(self.params.answers)}", "answers")
        return Annotations(
            tuple(item for found in parts for item in found.item_ids),
            torch.cat([found.answers for found in parts]) if parts else torch.zeros(0, dtype=torch.int64),
            tuple(who for found in parts for who in found.annotators),
        )

    def annotate_maps(self, items: MapsToJudge) -> Annotations:
        if not items.class_names:
            return self._answers(items.ids, Question.MAPS, items.key)
        names = items.class_names
        asked = {item: names[int(c)] for item, c in zip(items.ids, items.explained)}
        labels = {item: names[int(c)] for item, c in zip(items.ids, items.labels)}
        return self._answers(items.ids, Question.MAPS, items.key, {item: (asked[item], labels[item]) for item in items.ids})

    def annotate_neurons(self, items: NeuronsToJudge) -> Annotations:
        return self._answers(items.concepts.neuron_ids, Question.NEURONS, items.key)

    def annotate_attention(self, items: MapsToJudge) -> AttentionMaps:
        size = tuple(items.images[0].shape[-2:]) if len(items.ids) else (0, 0)
        found, regions = [], []
        for path in self._files(Question.ATTENTION):
            for record in self._read(path, items.ids, Question.ATTENTION, items.key):
                regions.append(read_mask(path.parent / record.drawing, size))
                found.append(record)
        stacked = torch.stack(regions) if regions else torch.zeros(0, *size, dtype=torch.bool)
        return AttentionMaps(tuple(r.item for r in found), stacked, tuple(r.annotator for r in found))


def shown_classes(path: Path) -> dict[str, str | None]:
    """Item → the class whose map people saw when they gave the answers in ``path``, from the
    annotation task beside it (``task.json``: each item's class); empty without one (a published
    list, or answers from elsewhere: taken as about each image's label)."""
    if not (path.parent / "task.json").is_file():
        return {}
    task = Task.read(path.parent)
    return {item.item: item.label for item in task.items} if task.question == Question.MAPS else {}


def about_classes(found: Annotations, shown: dict[str, str | None], asked: dict[str, tuple[str, str]]) -> Annotations:
    """The answers of ``found`` about the map of the class ``asked`` for each item (``asked``: item →
    (class asked about, its label)): where the task ``shown`` names the class people saw, it must be
    that class; where it names none, the answer is about the label's map."""
    keep = [shown.get(item, asked[item][1]) == asked[item][0] for item in found.item_ids]
    index = torch.tensor(keep, dtype=torch.bool)
    return Annotations(tuple(i for i, k in zip(found.item_ids, keep) if k), found.answers[index], tuple(w for w, k in zip(found.annotators, keep) if k))


def read_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """A drawn region: ``(H, W)`` bool, true where the PNG is brighter than mid-grey; its size must be the image's."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable PNG mask ({error})") from None
    if pixels.shape != tuple(size):
        raise DataError(f"{path}: the mask is {pixels.shape[0]}×{pixels.shape[1]}, the image is {size[0]}×{size[1]}")
    return torch.from_numpy(pixels > 127)


@hookimpl
def crayon_annotation_sources():
    return {"human": HumanAnswers}
