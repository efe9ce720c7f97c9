"""The contract of each component kind.

Plugins return subclasses of these classes from the hooks in :mod:`crayon_plugins.hookspecs`. Each
component declares its options as a pydantic model ``Params``; the factories in
:mod:`crayon_plugins.factory` validate configuration against it and construct ``Component(params)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from .data import Annotations, AttentionMaps, ImageSet, MapsToJudge, NeuronConcepts, NeuronsToJudge
from .errors import CrayonError
from .features import SharedFeatures
from .model import Classifier
from .training import Selection, predict


class Params(BaseModel):
    """Base of every component's options: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Base of all components: holds the validated ``params``.

    :attr:`name` is the name the component is registered under: the factory sets it on every
    component it builds (one built directly keeps the class's default, its class name).
    """

    Params: ClassVar[type[Params]] = Params

    @property
    def name(self) -> str:
        return self.__dict__.get("_name", type(self).__name__)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()


class Backbone(Component, ABC):
    """Builds a :class:`~crayon_plugins.model.Classifier` for ``num_classes`` classes."""

    @abstractmethod
    def build(self, num_classes: int) -> Classifier: ...


class Dataset(Component, ABC):
    """Gives the ``train``, ``val`` and ``test`` splits as :class:`~crayon_plugins.data.ImageSet`."""

    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    @abstractmethod
    def load(self, split: str) -> ImageSet: ...


class Interpreter(Component, ABC):
    """Saliency maps for a model's decisions.

    ``interpreter(model, images, targets)``: ``images`` ``(B, 3, H, W)`` in ``[0, 1]``, ``targets``
    ``(B,)`` class indices → ``(B, h, w)`` maps, non-negative and max-normalised per image to
    ``[0, 1]`` (an all-zero map stays zero). ``h, w`` is the interpreter's grid (Grad-CAM: the model's
    feature grid). A ``differentiable`` interpreter keeps the graph so a loss on its maps trains the
    model; the others return detached maps.
    """

    differentiable: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor: ...


class DifferentiableInterpreter(Interpreter):
    """An interpreter whose maps a loss can train through (CRAYON-Attention needs one).

    :meth:`explain` returns ``(maps, logits)`` with the graph kept, so a refiner pays for one forward
    pass per minibatch; calling the interpreter returns the same maps detached.
    """

    differentiable: ClassVar[bool] = True

    @abstractmethod
    def explain(self, model: Classifier, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]: ...

    def __call__(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        return self.explain(model, images, targets)[0].detach()


class ConceptExtractor(Component, ABC):
    """Describes each neuron (channel of the last feature map) by what activates it in the training
    split: ``extract(model, train)`` → :class:`~crayon_plugins.data.NeuronConcepts`."""

    @abstractmethod
    def extract(self, model: Classifier, train: ImageSet) -> NeuronConcepts: ...


class AnnotationSource(Component):
    """Answers questions about a model (a person's file, or a simulated annotator).

    ``annotate_maps``: yes / no / maybe, does each saliency map look at the right thing?
    ``annotate_neurons``: relevant (yes) / irrelevant (no) / maybe, is each neuron's concept relevant?
    ``annotate_attention``: draw where the model should look in each image (GRADIA, RRR and the
    other map-based methods need this).
    A source overrides the questions it can answer; :meth:`judges` names them, and the pipeline
    checks a configured source can answer what it is asked before any expensive work. Each answer
    carries the id of the annotator who gave it.
    """

    def annotate_maps(self, items: MapsToJudge) -> Annotations:
        raise NotImplementedError(f"{type(self).__name__} does not judge saliency maps")

    def annotate_neurons(self, items: NeuronsToJudge) -> Annotations:
        raise NotImplementedError(f"{type(self).__name__} does not judge neurons")

    def annotate_attention(self, items: MapsToJudge) -> AttentionMaps:
        raise NotImplementedError(f"{type(self).__name__} does not draw attention maps")

    @classmethod
    def judges(cls) -> frozenset[str]:
        """What this source answers: any of ``"maps"``, ``"neurons"`` and ``"attention"``."""
        methods = {"maps": "annotate_maps", "neurons": "annotate_neurons", "attention": "annotate_attention"}
        return frozenset(kind for kind, name in methods.items() if getattr(cls, name) is not getattr(AnnotationSource, name))


@dataclass(frozen=True)
class RefinementContext:
    """Everything a refiner may use besides the model it refines.

    Attributes:
        train: the training split.
        original_maps: ``(N, h, w)`` the original model's normalised maps on ``train``, in order.
        map_answers: ``(N,)`` per training item an :class:`~crayon_plugins.data.Answer` code, or
            :data:`~crayon_plugins.data.NOT_ANNOTATED`.
        annotations: the raw answers ``map_answers`` was derived from.
        seed: seed for every random choice the refiner makes.
        device: where to train.
        concepts: the original model's neuron concepts, for refiners that need ``"neuron-answers"``.
        neuron_answers: ``(C,)`` per neuron an :class:`~crayon_plugins.data.Answer` code (yes:
            relevant, no: irrelevant) or :data:`~crayon_plugins.data.NOT_ANNOTATED`, likewise.
        neuron_annotations: the raw answers ``neuron_answers`` was derived from, likewise.
        neuron_annotator: the configured neuron annotation source, as errors name it.
        attention: ``(N, H, W)`` bool regions the annotator drew on the training images (where the
            model should look), for refiners that need ``"attention-maps"`` or ``"boxes"``.
        attention_drawn: ``(N,)`` bool, which training images have a (non-empty) region.
        features: the original model's feature maps of ``train``; :meth:`penultimate` uses them.
        val: the validation split, with its group labels (``dfr`` trains on it).
        val_features: the original model's feature maps of ``val``, likewise.
        selection: validation and the run's model-selection rule; trainers pass it to
            :func:`~crayon_plugins.training.fit`, which records the validation curve in it.
        build_model: a new, untrained model of the original's architecture, seeded by ``seed``
            (``jtt`` trains from scratch).
        annotation_stats: per question (``"maps"``, ``"neurons"``) what the pipeline measured of the
            answers: items annotated, shares of each answer, the panel's agreement, oracle error rate.
    """

    train: ImageSet
    original_maps: Tensor
    map_answers: Tensor
    annotations: Annotations
    seed: int
    device: torch.device
    concepts: NeuronConcepts | None = None
    neuron_answers: Tensor | None = None
    neuron_annotations: Annotations | None = None
    neuron_annotator: str = "neuron annotator"
    attention: Tensor | None = None
    attention_drawn: Tensor | None = None
    features: SharedFeatures | None = None
    val: ImageSet | None = None
    val_features: SharedFeatures | None = None
    selection: Selection | None = None
    build_model: Callable[[], Classifier] | None = None
    annotation_stats: dict[str, dict[str, float]] = field(default_factory=dict)

    def maps_for(self, interpreter: Interpreter, model: Classifier, batch_size: int = 256) -> Tensor:
        """``(N, h, w)`` ``model``'s maps of ``train`` as ``interpreter`` draws them: :attr:`original_maps`
        when they lie on its grid, else computed by it (the run's interpreter may be another method,
        at another resolution, than the one a refiner's loss trains through)."""
        probe = interpreter(model, self.train.images[:1].to(self.device), self.train.labels[:1].to(self.device))
        if probe.shape[1:] == self.original_maps.shape[1:]:
            return self.original_maps
        images, labels = self.train.images.split(batch_size), self.train.labels.split(batch_size)
        return torch.cat([interpreter(model, x.to(self.device), y.to(self.device)).cpu() for x, y in zip(images, labels)])

    def penultimate(self, model: Classifier, split: str = "train") -> Tensor:
        """``(N, D)`` pooled features of ``split`` (``"train"`` or ``"val"``) that ``model``'s
        classifier sees; from the shared feature maps when ``model`` has the original's backbone
        weights (pruned or not)."""
        images, features = (self.train, self.features) if split == "train" else (self.val, self.val_features)
        if images is None:
            raise CrayonError(f"the refinement context has no {split} split")
        if features is not None:
            return features.penultimate(model)
        return predict(model, images.images, self.device, penultimate=True)


REFINER_NEEDS = frozenset({"map-answers", "neuron-answers", "attention-maps", "boxes", "groups"})
"""Everything a refiner may declare in ``needs``."""

METRIC_NEEDS = frozenset({"map-answers"})
"""Everything a metric may declare in ``needs``."""


class Refiner(Component, ABC):
    """Model + data + annotations → refined model. Must not modify the model it is given.

    ``needs`` names what the refiner uses beyond images and labels, and the pipeline prepares only
    what some refiner needs: ``"map-answers"`` (yes / no / maybe on the original model's maps),
    ``"neuron-answers"`` (relevant / irrelevant on its neurons), ``"attention-maps"`` (drawn regions),
    ``"boxes"`` (the same drawings, used as bounding boxes) and ``"groups"`` (true group labels).
    """

    needs: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def refine(self, model: Classifier, context: RefinementContext) -> Classifier: ...


@dataclass(frozen=True)
class Predictions:
    """What metrics see: a model's predictions on one split.

    Attributes:
        split: the evaluated split (labels, groups, names).
        predicted: ``(N,)`` predicted classes.
        train_group_shares: ``(G,)`` each group's share of the training set.
        map_answers: ``(N,)`` the annotator's :class:`~crayon_plugins.data.Answer` on the model's map of
            each image for its predicted class, for metrics that need ``"map-answers"``; else ``None``.
    """

    split: ImageSet
    predicted: Tensor
    train_group_shares: Tensor
    map_answers: Tensor | None = None


class Metric(Component, ABC):
    """Predictions → named numbers (a float, or a mapping name → float).

    ``needs``: ``"map-answers"`` makes the pipeline explain the evaluated model on the split and ask
    the annotator about each map (:attr:`Predictions.map_answers`).
    """

    needs: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def compute(self, predictions: Predictions) -> dict[str, float | dict[str, float]]: ...
