"""The contract of each component kind.

Plugins return subclasses of these classes from the hooks in :mod:`crayon_plugins.api.hookspecs`. Each
component declares its options as a pydantic model ``Params``; the factories in
:mod:`crayon_plugins.factory` validate configuration against it and construct ``Component(params)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from crayon_plugins.annotation.records import Annotations, AttentionMaps, MapsToJudge, NeuronsToJudge, Question
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import ConfigError, CrayonError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.concepts import NeuronConcepts
from crayon_plugins.model.features import SharedFeatures, predict
from crayon_plugins.training.selection import Selection


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

    def describe(self) -> str:
        """``name(option=value, …)``, as results and errors name a configured component."""
        options = ", ".join(f"{k}={v}" for k, v in self.params.model_dump().items())
        return f"{self.name}({options})" if options else self.name


class Backbone(Component, ABC):
    """Builds a :class:`~crayon_plugins.model.classifier.Classifier` for ``num_classes`` classes."""

    @abstractmethod
    def build(self, num_classes: int) -> Classifier: ...

    def weights_digest(self) -> str | None:
        """A digest of the weights file ``build`` loads (it enters cache keys); ``None`` for none."""
        return None

    def architecture(self, num_classes: int) -> Classifier:
        """The network :meth:`build` makes, without reading any pretrained weights: saved weights
        are loaded into it (:func:`crayon_plugins.load_model`). Default: :meth:`build`."""
        return self.build(num_classes)

    def recipe(self, num_classes: int) -> dict[str, Any] | None:
        """How to build the same network in its own library, without crayon-plugins, for a saved
        model's card: a JSON-able dict (the call and its arguments, and how the forward pass
        splits). ``None``: only this plugin can rebuild it."""
        return None


class Need(StrEnum):
    """What a refiner or metric may declare in ``needs``, beyond images and labels; the pipeline
    prepares only what some component needs. Members equal their strings (``"map-answers"``)."""

    MAP_ANSWERS = "map-answers"
    """Refiner, metric: yes / no / maybe on a model's saliency maps (a refiner's: the original
    model's training maps for each image's label)."""
    PREDICTED_MAP_ANSWERS = "predicted-map-answers"
    """Refiner: yes / no / maybe on the original model's training maps for the class it *predicts*
    (what GRADIA's people judged); the label's map wherever the prediction is right."""
    NEURON_ANSWERS = "neuron-answers"
    """Refiner: relevant / irrelevant on the original model's neurons."""
    ATTENTION_MAPS = "attention-maps"
    """Refiner: regions the annotator drew where the model should look."""
    BOXES = "boxes"
    """Refiner: the same drawings, used as bounding boxes."""
    GROUPS = "groups"
    """Refiner, annotation source: true group labels of the training (and validation) items."""
    MASKS = "masks"
    """Annotation source, metric: the dataset's object masks (an oracle judges or draws by them; a
    metric measures maps against them)."""
    EVALUATION_SPLITS = "evaluation-splits"
    """Metric: predictions on the dataset's extra evaluation splits (Backgrounds Challenge's)."""
    MAPS = "maps"
    """Metric: the evaluated model's maps of the split for its predicted classes, and the original
    model's maps of the same images for the original's predicted classes."""

    @property
    def question(self) -> Question | None:
        """The question annotators answer for this need (``None``: no annotator is asked)."""
        return _QUESTIONS.get(self)

    @property
    def label(self) -> str | None:
        """The kind of annotation results tables name for this need (``None``: not an annotation)."""
        return _LABELS.get(self)


_QUESTIONS = {Need.MAP_ANSWERS: Question.MAPS, Need.PREDICTED_MAP_ANSWERS: Question.MAPS, Need.NEURON_ANSWERS: Question.NEURONS, Need.ATTENTION_MAPS: Question.ATTENTION, Need.BOXES: Question.ATTENTION}
_LABELS = {Need.MAP_ANSWERS: "yes-no", Need.PREDICTED_MAP_ANSWERS: "yes-no", Need.NEURON_ANSWERS: "yes-no", Need.ATTENTION_MAPS: "map", Need.BOXES: "box", Need.GROUPS: "groups"}


DRAWINGS = frozenset({Need.ATTENTION_MAPS, Need.BOXES})
"""The needs answered by the annotator's drawings."""

MAP_JUDGEMENTS = frozenset({Need.MAP_ANSWERS, Need.PREDICTED_MAP_ANSWERS})
"""The needs answered by judging the original model's training maps."""


class Dataset(Component, ABC):
    """Gives the ``train``, ``val`` and ``test`` splits as :class:`~crayon_plugins.data.image_set.ImageSet`,
    and any ``evaluation_splits`` (models are also evaluated there, for metrics that need
    ``"evaluation-splits"``)."""

    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    evaluation_splits: ClassVar[tuple[str, ...]] = ()

    def fingerprint(self) -> str | None:
        """A digest of the files the dataset reads (it enters cache keys, so regenerated data is
        not mistaken for the old); ``None`` when the options alone determine the data."""
        return None

    def has_masks(self) -> bool:
        """Whether every split :meth:`load` gives has object masks (``ImageSet.masks`` not ``None``).

        Answered without decoding an image (from the options and file headers), so a run can refuse
        a configuration that needs masks before it loads anything. Default ``True``: a dataset that
        does not say is assumed to have them. ``check_dataset`` checks the answer against the splits.
        """
        return True

    def has_groups(self) -> bool:
        """Whether the splits carry a group (spurious) attribute (``ImageSet.has_groups``: non-empty
        ``spurious_names``); without one, worst-group and mean-group accuracy are not measured.

        Answered like :meth:`has_masks`, without decoding an image. Default ``True``: a dataset that
        does not say is assumed to have one.
        """
        return True

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
    split: ``extract(model, train)`` → :class:`~crayon_plugins.model.concepts.NeuronConcepts`."""

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

    The pipeline always asks about the whole training split (or every neuron), in split order, and
    cuts to the budget afterwards. A source whose answers were given about one split (a person's
    file) sets :attr:`whole_split`: it may then treat an item it was not asked about as an error, and
    its contract check asks it only about the whole split. :meth:`fingerprint` names what its
    answers depend on beyond its options (its files' contents), for the cache key.
    """

    whole_split: ClassVar[bool] = False
    needs: ClassVar[frozenset[Need]] = frozenset()
    """What the source reads from the dataset to answer (``Need.MASKS``, ``Need.GROUPS``): a run
    whose dataset lacks it is refused before any work."""

    def fingerprint(self) -> str | None:
        """A digest of what the answers depend on beyond :attr:`params` (``None``: nothing)."""
        return None

    def annotate_maps(self, items: MapsToJudge) -> Annotations:
        raise NotImplementedError(f"{type(self).__name__} does not judge saliency maps")

    def annotate_neurons(self, items: NeuronsToJudge) -> Annotations:
        raise NotImplementedError(f"{type(self).__name__} does not judge neurons")

    def annotate_attention(self, items: MapsToJudge) -> AttentionMaps:
        raise NotImplementedError(f"{type(self).__name__} does not draw attention maps")

    def panel(self, size: int, spread: float) -> list[AnnotationSource]:
        """The members of a panel of ``size`` annotators like this one, their noise rates spread by
        ``spread`` (``[panel]``). By default this source alone; a larger panel is a
        :class:`~crayon_plugins.errors.ConfigError`: only a simulated annotator can be copied."""
        if size == 1 and spread == 0:
            return [self]
        raise ConfigError(f"a panel of {size} needs a simulated annotator with noise options, and {type(self).__name__} has none")

    def noise_free(self) -> AnnotationSource | None:
        """This source without its noise: the truth its answers depart from, against which a run
        measures its error rate; ``None`` for a source without a noise model (people)."""
        return None

    def judges(self) -> frozenset[Question]:
        """The :class:`Question` s this source answers (by default, those whose method it overrides)."""
        methods = {Question.MAPS: "annotate_maps", Question.NEURONS: "annotate_neurons", Question.ATTENTION: "annotate_attention"}
        return frozenset(question for question, name in methods.items() if getattr(type(self), name) is not getattr(AnnotationSource, name))


@dataclass(frozen=True)
class NeuronJudgements:
    """The answers about the original model's neurons, for refiners that need ``"neuron-answers"``.

    Attributes:
        concepts: the neurons' concepts the annotator judged.
        answers: ``(C,)`` per neuron an :class:`~crayon_plugins.annotation.records.Answer` code (yes: relevant, no:
            irrelevant) or :data:`~crayon_plugins.annotation.records.NOT_ANNOTATED`.
        annotations: the raw answers ``answers`` was derived from.
        annotator: the configured neuron annotation source, as errors name it.
    """

    concepts: NeuronConcepts
    answers: Tensor
    annotations: Annotations
    annotator: str = "neuron annotator"


@dataclass(frozen=True)
class DrawnRegions:
    """Where the annotators say the model should look, for refiners that need ``"attention-maps"``
    or ``"boxes"``.

    Attributes:
        regions: ``(N, H, W)`` bool regions drawn on the training images.
        drawn: ``(N,)`` bool, which training images have a (non-empty) region.
    """

    regions: Tensor
    drawn: Tensor


@dataclass(frozen=True)
class AnswerSet:
    """What the annotators said, as the refiners get it: the aggregated answers about the training
    maps (empty when nobody was asked about maps), the neurons' judgements and the drawings
    (``None`` unless a refiner needs them), and per question what the run measured of the answers."""

    maps: Annotations
    neurons: NeuronJudgements | None = None
    drawings: DrawnRegions | None = None
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    predicted_maps: Annotations | None = None
    """The aggregated answers about the maps for the original model's predicted classes, when a
    refiner needs ``"predicted-map-answers"``."""


@dataclass(frozen=True)
class RefinementContext:
    """Everything a refiner may use besides the model it refines.

    Attributes:
        train: the training split.
        original_maps: ``(N, h, w)`` the original model's normalised maps on ``train``, in order.
        map_answers: ``(N,)`` per training item an :class:`~crayon_plugins.annotation.records.Answer` code, or
            :data:`~crayon_plugins.annotation.records.NOT_ANNOTATED`.
        annotations: the raw answers ``map_answers`` was derived from.
        seed: seed for every random choice the refiner makes.
        device: where to train.
        neurons: the neuron answers when some refiner of the run needs ``"neuron-answers"``, else
            ``None`` (:meth:`require_neurons`).
        drawings: the annotators' drawings when some refiner needs ``"attention-maps"`` or
            ``"boxes"``, else ``None`` (:meth:`require_drawings`).
        features: the original model's pooled features of ``train``; :meth:`penultimate` uses them.
        val: the validation split, with its group labels (``dfr`` trains on it).
        val_features: the original model's pooled features of ``val``, likewise.
        selection: validation and the run's model-selection rule; trainers pass it to
            :func:`~crayon_plugins.training.loop.fit`, which records the validation curve in it.
        build_model: a new, untrained model of the original's architecture, seeded by ``seed``
            (``jtt`` trains from scratch).
        annotation_stats: per question (``"maps"``, ``"neurons"``) what the pipeline measured of the
            answers: items annotated, shares of each answer, the panel's agreement, oracle error rate.
        details: what the refiner reports about its refinement beyond the model (JSON values, e.g. a
            search over its options); the run records it under ``details.refiner`` of the refiner's
            row in ``results.json``. The pipeline empties it before each refiner.
        predicted_map_answers: ``(N,)`` like :attr:`map_answers`, about the original model's maps for
            the class it predicts (equal to the label's map where the prediction is right), when some
            refiner needs ``"predicted-map-answers"``, else ``None`` (:meth:`require_predicted_map_answers`).
    """

    train: ImageSet
    original_maps: Tensor
    map_answers: Tensor
    annotations: Annotations
    seed: int
    device: torch.device
    neurons: NeuronJudgements | None = None
    drawings: DrawnRegions | None = None
    features: SharedFeatures | None = None
    val: ImageSet | None = None
    val_features: SharedFeatures | None = None
    selection: Selection | None = None
    build_model: Callable[[], Classifier] | None = None
    annotation_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    predicted_map_answers: Tensor | None = None

    @classmethod
    def of(cls, train: ImageSet, original_maps: Tensor, answers: AnswerSet, seed: int, device: torch.device, **rest) -> RefinementContext:
        """The context of a refinement whose annotators said ``answers``: the per-item codes come from
        its aggregated map answers; ``rest`` are the other fields (``val``, ``selection``, …)."""
        return cls(
            train=train,
            original_maps=original_maps,
            map_answers=answers.maps.aligned(train.ids),
            annotations=answers.maps,
            seed=seed,
            device=device,
            neurons=answers.neurons,
            drawings=answers.drawings,
            annotation_stats=answers.stats,
            predicted_map_answers=None if answers.predicted_maps is None else answers.predicted_maps.aligned(train.ids),
            **rest,
        )

    def require_predicted_map_answers(self, refiner: str) -> Tensor:
        """:attr:`predicted_map_answers`, or a :class:`CrayonError` naming ``refiner`` when the run prepared none."""
        if self.predicted_map_answers is None:
            raise CrayonError(f"refiner {refiner!r} needs answers about the predicted classes' maps, and the refinement context has none (declare 'predicted-map-answers' in needs)")
        return self.predicted_map_answers

    def require_neurons(self, refiner: str) -> NeuronJudgements:
        """:attr:`neurons`, or a :class:`CrayonError` naming ``refiner`` when the run prepared none."""
        if self.neurons is None:
            raise CrayonError(f"refiner {refiner!r} needs neuron answers, and the refinement context has none (declare 'neuron-answers' in needs)")
        return self.neurons

    def require_drawings(self, refiner: str) -> DrawnRegions:
        """:attr:`drawings`, or a :class:`CrayonError` naming ``refiner`` when the run prepared none."""
        if self.drawings is None:
            raise CrayonError(f"refiner {refiner!r} needs drawn attention maps, and the refinement context has none (declare 'attention-maps' or 'boxes' in needs)")
        return self.drawings

    def maps_for(self, interpreter: Interpreter, model: Classifier, batch_size: int = 256) -> Tensor:
        """``(N, h, w)`` ``model``'s maps of ``train`` as ``interpreter`` draws them: :attr:`original_maps`
        when they lie on its grid, else computed by it (the run's interpreter may be another method,
        at another resolution, than the one a refiner's loss trains through)."""
        probe = interpreter(model, self.train.images[:1].to(self.device), self.train.labels[:1].to(self.device))
        if probe.shape[1:] == self.original_maps.shape[1:]:
            return self.original_maps
        labels = self.train.labels
        return torch.cat([interpreter(model, x.to(self.device), labels[i].to(self.device)).cpu() for i, x in self.train.images.batches(batch_size=batch_size)])

    def penultimate(self, model: Classifier, split: str = "train") -> Tensor:
        """``(N, D)`` pooled features of ``split`` (``"train"`` or ``"val"``) that ``model``'s
        classifier sees; from the shared pooled features when ``model`` has the original's backbone
        weights (pruned or not)."""
        images, features = (self.train, self.features) if split == "train" else (self.val, self.val_features)
        if images is None:
            raise CrayonError(f"the refinement context has no {split} split")
        if features is not None:
            return features.penultimate(model)
        return predict(model, images.images, self.device, penultimate=True)


REFINER_NEEDS = frozenset({Need.MAP_ANSWERS, Need.PREDICTED_MAP_ANSWERS, Need.NEURON_ANSWERS, Need.ATTENTION_MAPS, Need.BOXES, Need.GROUPS})
"""Everything a refiner may declare in ``needs``."""

METRIC_NEEDS = frozenset({Need.MAP_ANSWERS, Need.EVALUATION_SPLITS, Need.MAPS, Need.MASKS})
"""Everything a metric may declare in ``needs``."""


class Refiner(Component, ABC):
    """Model + data + annotations → refined model. Must not modify the model it is given.

    ``needs`` names what the refiner uses beyond images and labels (:data:`REFINER_NEEDS`, see
    :class:`Need`), and the pipeline prepares only what some refiner needs.
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
        map_answers: ``(N,)`` the annotator's :class:`~crayon_plugins.annotation.records.Answer` on the model's map of
            each image for its predicted class, for metrics that need ``"map-answers"``; else ``None``.
        others: the same model's predictions on each of the dataset's ``evaluation_splits``, by split
            name, for metrics that need ``"evaluation-splits"``; else empty.
        maps: ``(N, h, w)`` the model's maps of the split for its predicted classes, when some metric
            needs ``"maps"`` or ``"map-answers"``; else ``None``.
        original_maps: ``(N, h, w)`` the original model's maps of the same images for *its* predicted
            classes (where the original looked), for metrics that need ``"maps"``; else ``None``.
            While the original model itself trains (its epochs' test metrics, ``[selection] also``),
            the model in training is the original: its own maps.
    """

    split: ImageSet
    predicted: Tensor
    train_group_shares: Tensor
    map_answers: Tensor | None = None
    others: Mapping[str, Predictions] = field(default_factory=dict)
    maps: Tensor | None = None
    original_maps: Tensor | None = None


class Metric(Component, ABC):
    """Predictions → named numbers (a float, or a mapping name → float).

    ``needs``: ``"map-answers"`` makes the pipeline explain the evaluated model on the split and ask
    the evaluation judge about each map (:attr:`Predictions.map_answers`); ``"maps"`` gives the maps
    themselves, the evaluated model's and the original's (:attr:`Predictions.maps`,
    :attr:`Predictions.original_maps`); ``"masks"`` makes a run whose dataset has no object masks be
    refused before any work; ``"evaluation-splits"`` makes it predict the dataset's extra evaluation
    splits too (:attr:`Predictions.others`).
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    evaluation_splits: ClassVar[tuple[str, ...]] = ()
    """The dataset's extra evaluation splits the metric reads from :attr:`Predictions.others`
    (a metric that needs ``"evaluation-splits"``); the run checks the dataset has them."""

    @abstractmethod
    def compute(self, predictions: Predictions) -> dict[str, float | dict[str, float]]: ...
