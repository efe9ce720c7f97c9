"""Tiny models, image sets and refinement contexts: enough to exercise a component in milliseconds."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch
from pydantic import Field
from torch import Tensor, nn

from crayon_plugins.annotation.records import NOT_ANNOTATED, Annotations, Answer, Question
from crayon_plugins.api.components import AnswerSet, Backbone, ConceptExtractor, DrawnRegions, NeuronJudgements, Params, RefinementContext
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.factory import create_concept_extractor
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.gradcam import GradCam


class TinyClassifier(Classifier):
    """Two 3×3 convolutions (the second with ``stride``), each followed by batch normalisation when
    ``batch_norm``, ReLU, global average pooling, a linear head.

    Without batch normalisation (the default) an image's outputs never depend on its batch-mates; with
    it they do in train mode, and training updates its running statistics, as in a ResNet.
    """

    def __init__(self, channels: int, stride: int, num_classes: int, batch_norm: bool = False) -> None:
        super().__init__(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channels=channels)

        def block(conv: nn.Conv2d) -> list[nn.Module]:
            return [conv, *([nn.BatchNorm2d(channels)] if batch_norm else []), nn.ReLU()]

        self.body = nn.Sequential(*block(nn.Conv2d(3, channels, 3, padding=1)), *block(nn.Conv2d(channels, channels, 3, stride=stride, padding=1)))
        self.classifier = nn.Linear(channels, num_classes)

    def forward_features(self, normalised: Tensor) -> Tensor:
        return self.body(normalised)

    def pool(self, features: Tensor) -> Tensor:
        return features.mean(dim=(2, 3))


class TinyBackbone(Backbone):
    """A :class:`TinyClassifier`: on 16×16 images with the defaults, an 8×8 grid of 8 neurons."""

    class Params(Params):
        channels: int = Field(default=8, ge=1)
        stride: int = Field(default=2, ge=1)
        batch_norm: bool = Field(default=False, description="batch normalisation after each convolution")

    def build(self, num_classes: int) -> Classifier:
        return TinyClassifier(self.params.channels, self.params.stride, num_classes, self.params.batch_norm)


def tiny_model(seed: int = 0, num_classes: int = 2, channels: int = 8, batch_norm: bool = False) -> Classifier:
    """A seeded :class:`TinyClassifier` in ``eval`` mode (``batch_norm``: with batch normalisation
    after each convolution, its running statistics those of a fresh layer)."""
    torch.manual_seed(seed)
    return TinyBackbone(TinyBackbone.Params(channels=channels, batch_norm=batch_norm)).build(num_classes).eval()


def tiny_image_set(
    n: int = 24, size: int = 16, num_classes: int = 2, masks: bool = True, seed: int = 0, split: str = "tiny"
) -> ImageSet:
    """``n`` seeded noise images in ``[0, 1]`` with a brighter rectangle (the object, also the mask)
    in each; labels cycle through the classes and the spurious attribute through two values."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 0.6
    corner = torch.randint(0, max(size // 2, 1), (n, 2), generator=g)
    extent = torch.randint(1, max(size // 2, 1) + 1, (n, 2), generator=g)
    coords = torch.arange(size)
    rows = (coords >= corner[:, :1]) & (coords < corner[:, :1] + extent[:, :1])
    cols = (coords >= corner[:, 1:]) & (coords < corner[:, 1:] + extent[:, 1:])
    objects = rows[:, :, None] & cols[:, None, :]
    images = torch.where(objects[:, None], images + 0.4, images)
    labels = torch.arange(n) % num_classes
    spurious = (torch.arange(n) // num_classes) % 2
    return ImageSet(
        images=images,
        labels=labels,
        spurious=spurious,
        masks=objects if masks else None,
        ids=tuple(f"{split}-{i:03d}" for i in range(n)),
        class_names=tuple(f"class-{k}" for k in range(num_classes)),
        spurious_names=("a", "b"),
    )


def mixed_answers(n: int, seed: int = 0) -> Tensor:
    """``(n,)`` seeded :class:`~crayon_plugins.annotation.records.Answer` codes, every kind (and
    :data:`~crayon_plugins.annotation.records.NOT_ANNOTATED`) present once ``n ≥ 4``."""
    codes = torch.tensor([Answer.NO, Answer.YES, Answer.MAYBE, NOT_ANNOTATED])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return codes[order % len(codes)]


def annotations_of(ids: tuple[str, ...], answers: Tensor, annotator: str = "tiny") -> Annotations:
    """The :class:`~crayon_plugins.annotation.records.Annotations` behind per-item ``answers`` (unannotated items left out)."""
    given = (answers != NOT_ANNOTATED).nonzero().flatten().tolist()
    return Annotations(tuple(ids[i] for i in given), answers[given].clone(), (annotator,) * len(given))


def untrained_copy(model: Classifier, seed: int = 0) -> Classifier:
    """A copy of ``model`` with every layer's parameters drawn afresh (seeded); buffers such as the
    neuron mask are kept."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh


def tiny_context(
    model: Classifier,
    train: ImageSet,
    map_answers: Tensor | None = None,
    neuron_answers: Tensor | None = None,
    original_maps: Tensor | None = None,
    drawings: bool = True,
    seed: int = 0,
) -> RefinementContext:
    """A complete :class:`~crayon_plugins.api.components.RefinementContext` for ``model`` on ``train``.

    Maps are ``model``'s Grad-CAM unless ``original_maps`` is given; answers default to
    :func:`mixed_answers` (the same about the maps for the predicted classes); concepts come from ``top-patches`` (k = 4); the drawings are the object
    masks of ``train`` (``drawings=False``: nobody drew anything); the validation split is another
    seeded tiny image set like ``train``, and new models are :func:`untrained_copy` of ``model``.
    """
    if original_maps is None:
        original_maps = GradCam()(model, train.images.all(), train.labels)
    map_answers = mixed_answers(len(train), seed) if map_answers is None else map_answers
    concepts = _top_patches(train).extract(model, train)
    neuron_answers = mixed_answers(len(concepts), seed + 1) if neuron_answers is None else neuron_answers
    size = train.image_size
    if drawings and train.masks is not None:
        attention = train.masks.all().clone()
    else:
        attention = torch.zeros(len(train), *size, dtype=torch.bool)
    answers = AnswerSet(
        annotations_of(train.ids, map_answers),
        NeuronJudgements(concepts, neuron_answers, annotations_of(concepts.neuron_ids, neuron_answers)),
        DrawnRegions(attention, attention.flatten(1).any(dim=1)),
        predicted_maps=annotations_of(train.ids, map_answers),  # the same answers about the predicted classes' maps
    )
    val = tiny_image_set(n=max(len(train), 8), size=size[0], num_classes=len(train.class_names), seed=seed + 101, split="val")
    return RefinementContext.of(train, original_maps, answers, seed, torch.device("cpu"), val=val, build_model=lambda: untrained_copy(model, seed))


def tiny_answer_files(folder: Path, model: Classifier | None = None, train: ImageSet | None = None) -> list[Path]:
    """Answers files (:mod:`crayon_plugins.annotation.answers`) about ``train`` (default :func:`tiny_image_set`)
    and the neurons of ``model`` (default :func:`tiny_model`), as people would have written them:
    ``maps.jsonl`` (alice every other image, bob every third), ``neurons.jsonl`` (alice, every
    neuron) and ``attention.jsonl`` (alice drew the object masks of images 0 and 5, PNGs beside it)."""
    from PIL import Image

    from crayon_plugins.annotation.answers import Record, append

    model = model if model is not None else tiny_model()
    train = train if train is not None else tiny_image_set()
    folder.mkdir(parents=True, exist_ok=True)
    when = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    words = ("yes", "no", "maybe")

    def write(name: str, records: list[Record]) -> Path:
        for record in records:
            append(folder / name, record)
        return folder / name

    maps = write("maps.jsonl", [
        Record(item=train.ids[i], answer=words[i % 3], annotator=who, time=when + timedelta(seconds=i))
        for who, step in (("alice", 2), ("bob", 3)) for i in range(0, len(train), step)
    ])
    neurons = _top_patches(train).extract(model, train).neuron_ids
    judged = write("neurons.jsonl", [
        Record(item=n, question=Question.NEURONS, answer=words[i % 2], annotator="alice", time=when + timedelta(seconds=i)) for i, n in enumerate(neurons)
    ])
    drawn = []
    for i in (0, 5):
        Image.fromarray(train.masks[i].numpy().astype("uint8") * 255).save(folder / f"drawing-{i}.png")
        drawn.append(Record(item=train.ids[i], question=Question.ATTENTION, drawing=f"drawing-{i}.png", annotator="alice", time=when))
    return [maps, judged, write("attention.jsonl", drawn)]


def _top_patches(train: ImageSet) -> ConceptExtractor:
    """The registered ``top-patches`` concept extractor, with at most 4 images per neuron."""
    return create_concept_extractor("top-patches", {"k": min(4, len(train))})

