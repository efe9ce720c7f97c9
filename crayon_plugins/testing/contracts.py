"""Executable contracts: one call checks a component against every promise of its kind.

In the spirit of scikit-learn's ``check_estimator``: ``check_refiner(MyRefiner())`` runs the refiner
on a tiny model and image set through each promise in :data:`PROMISES`, and either returns a
:class:`Report` of the promises kept or raises :class:`ContractError` naming every promise broken
(a promise whose check raised counts as broken, with the exception). Each check accepts the tiny
inputs it would otherwise build, for components that need a particular model or data.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor

from crayon_plugins.annotation.records import NOT_ANNOTATED, Annotations, Answer, AttentionMaps, MapsToJudge, NeuronsToJudge, Question
from crayon_plugins.api import components
from crayon_plugins.api.components import Need
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import CrayonError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.concepts import NeuronConcepts
from crayon_plugins.model.maps import normalise_maps
from crayon_plugins.registry import KINDS, Registration, default_registry
from crayon_plugins.testing.tiny import mixed_answers, tiny_context, tiny_image_set, tiny_model
from crayon_plugins.utils.progress import silenced

OPTIONS = {"options-are-validated": "``Params`` is a pydantic model that rejects unknown options, and ``params`` is an instance of it"}

PROMISES: dict[str, dict[str, str]] = {
    "refiner": {
        **OPTIONS,
        "declares-known-needs": "``needs`` names only what the pipeline prepares (REFINER_NEEDS)",
        "returns-a-classifier": "``refine`` returns a new Classifier with the original's classes and neurons, finite logits",
        "leaves-the-original-untouched": "the model given to ``refine`` keeps its weights, buffers, mode and gradients",
        "deterministic-under-seed": "two refinements with one context (one seed) give identical weights",
        "maybe-adds-nothing": "answers that are all *maybe* refine exactly as no answers at all",
        "answers-change-the-model": "annotations of the kinds it needs (mixed map and neuron answers, drawn object regions) give other weights than none at all "
        "(every item unannotated, nothing drawn); not applicable to a refiner that needs no annotation",
        "finite-on-all-zero-maps": "all-zero original maps, no drawings, or a model whose every neuron is pruned leave the weights finite",
        "clear-error-without-annotations": "a context without an annotation the refiner needs raises CrayonError",
        "accepts-maps-of-any-grid": "original maps at image resolution (another interpreter's) refine without error",
        "works-on-batch-norm": "on a tiny model with batch normalisation too, ``refine`` returns a Classifier with the original's classes and neurons, "
        "finite logits (not applicable when the caller passes its own model: the check runs on that one only)",
    },
    "interpreter": {
        **OPTIONS,
        "maps-have-the-documented-shape": "``(B, h, w)`` float maps, one per image, on one grid for one image size",
        "maps-are-normalised": "finite, in [0, 1], each map's maximum 1 or the map all zero",
        "batch-independent": "an image's map does not depend on its batch-mates or its place in the batch",
        "deterministic": "explaining twice gives the same maps",
        "leaves-the-model-untouched": "the model keeps its weights, mode and (absent) gradients",
        "finite-on-blank-images": "black and uniform images give finite, normalised maps",
        "differentiable-maps": "a DifferentiableInterpreter's ``explain`` returns maps with a graph to the weights and the model's logits",
    },
    "annotation_source": {
        **OPTIONS,
        "judges-something": "``judges()`` names at least one of maps, neurons, attention",
        "answers-what-it-is-asked": "answers (or drawings of the images' size) only about the items asked, once per item and annotator, with annotator ids",
        "deterministic": "asking twice gives the same answers",
        "order-independent": "an item's answer does not depend on the order the items are asked in (not for a ``whole_split`` source)",
        "handles-no-items": "asking about no items gives no answers (not for a ``whole_split`` source)",
        "refuses-part-of-a-split": "a ``whole_split`` source asked about the split without an item it answers raises a CrayonError rather than answer about other items (only for such sources)",
    },
    "concept_extractor": {
        **OPTIONS,
        "describes-every-neuron": "NeuronConcepts with one unique id per neuron of the model and activations ``(N, C)``",
        "indices-in-range": "top images in the split (none twice per neuron), cells in the model's grid, boxes inside the image",
        "strongest-first": "top activations are the images' activations, non-increasing",
        "deterministic": "extracting twice gives the same concepts",
        "leaves-the-model-untouched": "the model keeps its weights and mode",
    },
    "backbone": {
        **OPTIONS,
        "builds-a-classifier": "``build(K)`` returns a Classifier with finite ``(B, K)`` logits for images in [0, 1]",
        "splits-at-the-feature-map": "``forward == classifier(pool(features))``, features ``(B, C, h, w)`` with C neurons",
        "masks-neurons": "the neuron mask is a buffer in the state dict and zeroes its channels of the features",
        "batch-independent": "in eval mode an image's logits do not depend on its batch-mates",
        "seeded-build": "one torch seed builds identical weights",
        "trainable-features": "a loss on the logits sends gradients into the layers before the feature map",
    },
    "dataset": {
        **OPTIONS,
        "loads-every-split": "``load(split)`` gives an ImageSet for every split in ``splits``",
        "images-in-unit-range": "images are finite float32 in [0, 1]",
        "labels-and-groups-in-range": "labels index ``class_names``, spurious attributes index ``spurious_names`` (all zero where it is empty: no group attribute), masks are bool",
        "says-what-it-has": "``has_masks()`` and ``has_groups()``, asked before any split is loaded, agree with every split: masks iff ``has_masks()``, a group attribute iff ``has_groups()``",
        "ids-unique-across-splits": "no item id appears in two splits",
        "deterministic": "loading twice gives the same images, labels and ids",
        "rejects-unknown-splits": "an unknown split raises ValueError or CrayonError naming it",
    },
    "metric": {
        **OPTIONS,
        "declares-known-needs": "``needs`` names only what the pipeline prepares (METRIC_NEEDS)",
        "returns-named-numbers": "a mapping of names to finite-or-NaN floats, or to mappings of names to floats, JSON-serialisable",
        "deterministic": "computing twice gives the same numbers",
        "order-invariant": "shuffling the items (with their predictions and answers) gives the same numbers",
        "leaves-predictions-untouched": "the predictions and split are not modified",
    },
}
"""Component kind → promise name → what it means. Check functions keep exactly these promises."""


class Broken(Exception):
    """Raised inside a promise: the component broke it (the message says how)."""


def require(condition: bool, message: str) -> None:
    """Break the current promise with ``message`` unless ``condition``."""
    if not condition:
        raise Broken(message)


@dataclass(frozen=True)
class BrokenPromise:
    """A promise a component broke, and how."""

    promise: str
    detail: str


@dataclass(frozen=True)
class Report:
    """The outcome of a check that passed: every promise of the kind kept, or not applicable to
    this component (``skipped``); ``models``: the models the promises were checked on, where the
    check runs the component on models (``check_refiner``)."""

    kind: str
    component: str
    kept: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    models: tuple[str, ...] = ()


class ContractError(AssertionError):
    """A component broke promises of its kind; :attr:`broken` lists each with what went wrong;
    :attr:`skipped` and :attr:`models` are as in :class:`Report`."""

    def __init__(
        self, kind: str, component: str, broken: list[BrokenPromise], kept: list[str], skipped: tuple[str, ...] = (), models: tuple[str, ...] = ()
    ) -> None:
        self.kind, self.component, self.broken, self.kept, self.skipped, self.models = kind, component, broken, kept, skipped, models
        lines = [f"{kind.replace('_', ' ')} {component} broke {len(broken)} of {len(broken) + len(kept)} promises:"]
        lines += [f"  - {b.promise}: {b.detail}" for b in broken]
        super().__init__("\n".join(lines))


class _Contract:
    """Runs promises one by one, recording which were kept and which broken."""

    def __init__(self, kind: str, component: components.Component) -> None:
        self.kind, self.component = kind, component
        self.label = type(component).__qualname__
        self.kept: list[str] = []
        self.skipped: list[str] = []
        self.broken: list[BrokenPromise] = []
        self.models: tuple[str, ...] = ()

    @contextmanager
    def promise(self, name: str) -> Iterator[None]:
        assert name in PROMISES[self.kind], f"{name!r} is not a promise of {self.kind}"
        try:
            yield
        except Broken as error:
            self.broken.append(BrokenPromise(name, str(error)))
        except Exception as error:  # noqa: BLE001 - a component that raises breaks the promise
            self.broken.append(BrokenPromise(name, f"raised {type(error).__name__}: {error}"))
        else:
            self.kept.append(name)

    def not_applicable(self, name: str) -> None:
        assert name in PROMISES[self.kind], f"{name!r} is not a promise of {self.kind}"
        self.skipped.append(name)

    def report(self) -> Report:
        missing = set(PROMISES[self.kind]) - set(self.kept) - set(self.skipped) - {b.promise for b in self.broken}
        assert not missing, f"check of {self.kind} skipped promises {sorted(missing)}"
        if self.broken:
            raise ContractError(self.kind, self.label, self.broken, self.kept, tuple(self.skipped), self.models)
        return Report(self.kind, self.label, tuple(self.kept), tuple(self.skipped), self.models)

    def check_options(self) -> None:
        with self.promise("options-are-validated"):
            params_type = getattr(type(self.component), "Params", None)
            require(isinstance(params_type, type) and issubclass(params_type, BaseModel), "Params is not a pydantic model")
            require(params_type.model_config.get("extra") == "forbid", "Params accepts unknown options (set extra='forbid')")
            require(isinstance(self.component.params, params_type), f"params is a {type(self.component.params).__name__}, not its Params")


class _Once:
    """A value computed on first use; its exception, if any, is raised again on each use."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute, self.done, self.value, self.error = compute, False, None, None

    def __call__(self) -> Any:
        if not self.done:
            self.done = True
            try:
                self.value = self.compute()
            except Exception as error:  # noqa: BLE001 - re-raised to each promise that needs it
                self.error = error
        if self.error is not None:
            raise self.error
        return self.value


def _snapshot(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def _unchanged(model: torch.nn.Module, before: dict[str, Any]) -> str | None:
    """How ``model`` differs from its :func:`_snapshot`, or ``None``."""
    after = _snapshot(model)
    changed = [k for k, v in before["state"].items() if k not in after["state"] or not torch.equal(v, after["state"][k])]
    if changed:
        return f"changed {', '.join(changed[:3])}{' …' if len(changed) > 3 else ''}"
    if before["training"] != after["training"]:
        return "switched the model between train and eval mode"
    if before["requires_grad"] != after["requires_grad"]:
        return "changed which parameters require gradients"
    if any((a is None) != (b is None) or (a is not None and not torch.equal(a, b)) for a, b in zip(before["grads"], after["grads"])):
        return "left gradients on the model's parameters"
    return None


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> str | None:
    """The first state-dict entry where ``a`` and ``b`` differ by more than ``atol``, or ``None``."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return "the state dicts have different entries"
    for key, value in sa.items():
        other = sb[key]
        if value.shape != other.shape or not torch.allclose(value.float(), other.float(), rtol=0, atol=atol):
            return f"{key} differs (largest difference {float((value.float() - other.float()).abs().max()):.3g})"
    return None


ANNOTATION_NEEDS = frozenset(need for need in Need if need.question is not None)
"""The refiner needs that annotators answer: map and neuron answers, drawings."""


def _require_a_classifier(refined: Any, model: Classifier, train: ImageSet, on: str = "") -> None:
    """Break the promise unless ``refined`` is a Classifier with ``model``'s neurons whose logits on
    ``train`` are finite, one per class (``on`` names the model in the message)."""
    require(isinstance(refined, Classifier), f"refine returned {type(refined).__name__}, not a Classifier{on}")
    with torch.no_grad():
        logits = refined.eval()(train.images.all())
    require(logits.shape == (len(train), len(train.class_names)), f"logits {tuple(logits.shape)} for {len(train)} images of {len(train.class_names)} classes{on}")
    require(bool(torch.isfinite(logits).all()), f"the refined model's logits are not finite{on}")
    require(refined.neuron_mask.shape == model.neuron_mask.shape, f"the refined model has another number of neurons{on}")


@silenced()
def check_refiner(refiner: components.Refiner, model: Classifier | None = None, train: ImageSet | None = None) -> Report:
    """Check ``refiner`` against :data:`PROMISES` ``["refiner"]`` on ``model`` (default: a seeded
    :func:`~crayon_plugins.testing.tiny.tiny_model`, and for ``works-on-batch-norm`` the same with
    batch normalisation; a given ``model`` is the only one) and ``train`` (24 tiny images with masks).
    The report's ``models`` names the models used."""
    contract = _Contract("refiner", refiner)
    contract.check_options()
    given = model is not None
    model = model if given else tiny_model()
    contract.models = (f"the given {type(model).__name__}",) if given else ("tiny_model()", "tiny_model(batch_norm=True)")
    train = train if train is not None else tiny_image_set()
    context = tiny_context(model, train)
    needs = type(refiner).needs

    def refine(ctx: components.RefinementContext, start: Classifier = model) -> Classifier:
        return refiner.refine(copy.deepcopy(start), ctx)

    def everyone(code: int, drawings: bool = True) -> components.RefinementContext:
        """The context with every map and neuron answered ``code`` (``drawings=False``: nothing drawn)."""
        return tiny_context(model, train, torch.full((len(train),), code), torch.full((len(context.neurons.answers),), code), drawings=drawings)

    first = _Once(lambda: refine(context))

    with contract.promise("declares-known-needs"):
        unknown = set(needs) - components.REFINER_NEEDS
        require(not unknown, f"needs {sorted(unknown)}, which the pipeline never prepares; known: {sorted(components.REFINER_NEEDS)}")
    with contract.promise("returns-a-classifier"):
        _require_a_classifier(first(), model, train)
    with contract.promise("leaves-the-original-untouched"):
        original = copy.deepcopy(model)
        before = _snapshot(original)
        refined = refiner.refine(original, context)
        require(refined is not original, "refine returned the model it was given; return a copy")
        require((difference := _unchanged(original, before)) is None, f"refine {difference} of the model it was given")
    with contract.promise("deterministic-under-seed"):
        require((difference := _same_weights(first(), refine(context))) is None, f"two refinements with seed {context.seed} differ: {difference}")
    with contract.promise("maybe-adds-nothing"):
        difference = _same_weights(refine(everyone(int(Answer.MAYBE))), refine(everyone(NOT_ANNOTATED)), atol=1e-6)
        require(difference is None, f"all-maybe answers refine differently from no answers: {difference}")
    annotations = sorted(set(needs) & ANNOTATION_NEEDS)
    if not annotations:
        contract.not_applicable("answers-change-the-model")
    else:
        with contract.promise("answers-change-the-model"):
            unchanged = _same_weights(first(), refine(everyone(NOT_ANNOTATED, drawings=False))) is None
            require(not unchanged, f"with {', '.join(annotations)} it refines exactly as with no annotations at all (all unannotated, nothing drawn): they change nothing")
    with contract.promise("finite-on-all-zero-maps"):
        zero_maps = tiny_context(model, train, original_maps=torch.zeros_like(context.original_maps), drawings=False)
        blind = copy.deepcopy(model)
        blind.neuron_mask.zero_()
        for what, ctx, start in (("all-zero original maps without drawings", zero_maps, model), ("a model with every neuron pruned", tiny_context(blind, train), blind)):
            refined = refine(ctx, start)
            bad = [k for k, v in refined.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
            require(not bad, f"with {what}, the refined weights {', '.join(bad[:3])} are not finite")
    with contract.promise("clear-error-without-annotations"):
        missing = {Need.NEURON_ANSWERS: {"neurons": None}, Need.PREDICTED_MAP_ANSWERS: {"predicted_map_answers": None}, Need.ATTENTION_MAPS: {"drawings": None}, Need.BOXES: {"drawings": None}}
        for need in sorted(set(needs) & set(missing)):
            try:
                refine(replace(context, **missing[need]))
            except CrayonError:
                continue
            except Exception as error:  # noqa: BLE001
                raise Broken(f"without {need}, refine raised {type(error).__name__} ({error}) instead of a CrayonError") from None
            raise Broken(f"without {need}, which it needs, refine succeeded instead of raising a CrayonError")
    with contract.promise("accepts-maps-of-any-grid"):
        size = train.image_size
        fine = tiny_context(model, train, original_maps=torch.rand(len(train), *size, generator=torch.Generator().manual_seed(0)))
        require(isinstance(refine(fine), Classifier), "with image-resolution original maps, refine returned no Classifier")
    if given:
        contract.not_applicable("works-on-batch-norm")
    else:
        with contract.promise("works-on-batch-norm"):
            normed = tiny_model(batch_norm=True)
            _require_a_classifier(refine(tiny_context(normed, train), normed), normed, train, on=" on the batch-norm model")
    return contract.report()


def _images(n: int = 6, size: int = 16, seed: int = 1) -> Tensor:
    return tiny_image_set(n=n, size=size, seed=seed).images.all()


@silenced()
def check_interpreter(interpreter: components.Interpreter, model: Classifier | None = None, images: Tensor | None = None) -> Report:
    """Check ``interpreter`` against :data:`PROMISES` ``["interpreter"]`` on ``model`` (default: a
    seeded tiny model) and ``images`` ``(B, 3, H, W)`` (default: 6 tiny images)."""
    contract = _Contract("interpreter", interpreter)
    contract.check_options()
    model = model if model is not None else tiny_model()
    images = images if images is not None else _images()
    with torch.no_grad():
        targets = torch.arange(len(images)) % model(images[:1]).shape[1]
    before = _snapshot(model)
    maps = _Once(lambda: interpreter(model, images, targets))

    def normalised(found: Tensor, what: str) -> None:
        require(bool(torch.isfinite(found).all()), f"{what} are not finite")
        require(float(found.min()) >= 0 and float(found.max()) <= 1 + 1e-5, f"{what} range over [{float(found.min()):.3g}, {float(found.max()):.3g}], not [0, 1]")
        peaks = found.flatten(1).amax(dim=1)
        require(bool(((peaks - 1).abs() < 1e-3).logical_or(peaks == 0).all()), f"{what}: maxima {peaks.tolist()} are neither 1 nor 0 (normalise each map)")

    with contract.promise("maps-have-the-documented-shape"):
        found = maps()
        require(isinstance(found, Tensor) and found.is_floating_point(), f"returned {type(found).__name__}, not a float tensor")
        require(found.ndim == 3 and len(found) == len(images), f"maps {tuple(found.shape)} for {len(images)} images; expected (B, h, w)")
        again = interpreter(model, images[:2], targets[:2])
        require(again.shape[1:] == found.shape[1:], f"a batch of 2 gives a {tuple(again.shape[1:])} grid, a batch of {len(images)} {tuple(found.shape[1:])}")
    with contract.promise("maps-are-normalised"):
        normalised(maps(), "maps")
    with contract.promise("batch-independent"):
        alone = torch.cat([interpreter(model, images[i : i + 1], targets[i : i + 1]) for i in range(len(images))])
        reverse = interpreter(model, images.flip(0), targets.flip(0)).flip(0)
        for what, other in (("alone", alone), ("in reverse order", reverse)):
            gap = float((other - maps()).abs().max())
            require(gap <= 1e-4, f"explaining each image {what} changes its map by up to {gap:.3g}")
    with contract.promise("deterministic"):
        gap = float((interpreter(model, images, targets) - maps()).abs().max())
        require(gap == 0, f"a second call differs by up to {gap:.3g}")
    with contract.promise("finite-on-blank-images"):
        for what, blank in (("black", torch.zeros_like(images)), ("uniform grey", torch.full_like(images, 0.5))):
            normalised(interpreter(model, blank, targets), f"maps of {what} images")
    with contract.promise("differentiable-maps"):
        if isinstance(interpreter, components.DifferentiableInterpreter):
            explained, logits = interpreter.explain(model, images, targets)
            require(explained.requires_grad, "explain's maps carry no graph")
            with torch.no_grad():
                expected = model(images)
            require(torch.allclose(logits.detach(), expected, atol=1e-5), "explain's logits are not the model's")
            require(torch.allclose(explained.detach(), maps(), atol=1e-6), "explain's maps differ from calling the interpreter")
            grads = torch.autograd.grad(explained.sum(), [p for p in model.parameters() if p.requires_grad], allow_unused=True)
            require(any(g is not None and bool(g.abs().sum() > 0) for g in grads), "the maps' gradient reaches no weight")
    with contract.promise("leaves-the-model-untouched"):
        require((difference := _unchanged(model, before)) is None, f"explaining {difference}")
    return contract.report()


def _questions(model: Classifier, train: ImageSet) -> dict[Question, Any]:
    """What a source is asked about ``train``: the model's maps, and its neurons' concepts, as the
    refiners' :func:`~crayon_plugins.testing.tiny.tiny_context` has them."""
    context = tiny_context(model, train)
    maps = MapsToJudge.of(train, context.original_maps)
    return {Question.MAPS: maps, Question.ATTENTION: maps, Question.NEURONS: NeuronsToJudge(context.neurons.concepts, train)}


def _reordered(items: MapsToJudge | NeuronsToJudge, order: list[int]) -> MapsToJudge | NeuronsToJudge:
    """The same questions asked in ``order`` (maps), or about a reordered neuron list (neurons)."""
    if isinstance(items, MapsToJudge):
        return MapsToJudge(tuple(items.ids[i] for i in order), items.images[order], items.maps[order], items.labels[order], items.spurious[order], None if items.masks is None else items.masks[order])
    c = items.concepts
    concepts = replace(c, neuron_ids=tuple(c.neuron_ids[i] for i in order), activations=c.activations[:, order], top_images=c.top_images[order], top_activations=c.top_activations[order], cells=c.cells[order], boxes=c.boxes[order])
    return NeuronsToJudge(concepts, items.train)


def _item_ids(items: MapsToJudge | NeuronsToJudge) -> tuple[str, ...]:
    return items.ids if isinstance(items, MapsToJudge) else items.concepts.neuron_ids


def _by_item(found: Annotations | AttentionMaps) -> dict[tuple[str, str], Any]:
    values = found.answers.tolist() if isinstance(found, Annotations) else [r.flatten().tolist() for r in found.regions]
    return dict(zip(zip(found.item_ids, found.annotators), values))


@silenced()
def check_annotation_source(source: components.AnnotationSource, model: Classifier | None = None, train: ImageSet | None = None) -> Report:
    """Check ``source`` against :data:`PROMISES` ``["annotation_source"]`` on every question it
    :meth:`~crayon_plugins.api.components.AnnotationSource.judges`, asked about ``model`` (default: a seeded
    tiny model) and ``train`` (24 tiny images with object masks)."""
    contract = _Contract("annotation_source", source)
    contract.check_options()
    model = model if model is not None else tiny_model()
    train = train if train is not None else tiny_image_set()
    methods = {Question.MAPS: source.annotate_maps, Question.NEURONS: source.annotate_neurons, Question.ATTENTION: source.annotate_attention}
    judged = sorted(source.judges() & set(methods))
    questions = _Once(lambda: _questions(model, train))
    answers = {q: _Once(lambda q=q: methods[q](questions()[q])) for q in judged}

    with contract.promise("judges-something"):
        require(bool(judged), f"judges() is {', '.join(sorted(source.judges())) or 'empty'}; it must name at least one of {', '.join(sorted(methods))}")
    with contract.promise("answers-what-it-is-asked"):
        for q in judged:
            found, items = answers[q](), questions()[q]
            expected = AttentionMaps if q == Question.ATTENTION else Annotations
            require(isinstance(found, expected), f"annotate_{q} returned {type(found).__name__}, not {expected.__name__}")
            unknown = set(found.item_ids) - set(_item_ids(items))
            require(not unknown, f"annotate_{q} answered about items it was not asked: {sorted(unknown)[:3]}")
            pairs = list(zip(found.item_ids, found.annotators))
            require(len(set(pairs)) == len(pairs), f"annotate_{q} answered an item twice for one annotator")
            require(all(isinstance(a, str) and a for a in found.annotators), f"annotate_{q} gave answers without annotator ids")
            if q == Question.ATTENTION:
                size = train.image_size
                require(found.regions.dtype == torch.bool and tuple(found.regions.shape[1:]) == size, f"drawings are {found.regions.dtype} {tuple(found.regions.shape)}, not bool (M, {size[0]}, {size[1]})")
    with contract.promise("deterministic"):
        for q in judged:
            require(_by_item(methods[q](questions()[q])) == _by_item(answers[q]()), f"annotate_{q} answers differently when asked again")
    if source.whole_split:  # asked only about the whole split, in order (AnnotationSource.whole_split)
        contract.not_applicable("order-independent")
        contract.not_applicable("handles-no-items")
        with contract.promise("refuses-part-of-a-split"):
            for q in judged:
                items, found = questions()[q], answers[q]()
                if not len(found.item_ids):
                    continue
                ids = _item_ids(items)
                left_out = ids.index(found.item_ids[0])
                try:
                    methods[q](_reordered(items, [i for i in range(len(ids)) if i != left_out]))
                except CrayonError:
                    continue
                raise Broken(f"annotate_{q} answered about the split without {ids[left_out]!r}, an item it has an answer for")
        return contract.report()
    contract.not_applicable("refuses-part-of-a-split")
    with contract.promise("order-independent"):
        for q in judged:
            items = questions()[q]
            order = list(reversed(range(len(_item_ids(items)))))
            require(_by_item(methods[q](_reordered(items, order))) == _by_item(answers[q]()), f"annotate_{q} answers differently when the items come in reverse order")
    with contract.promise("handles-no-items"):
        for q in judged:
            found = methods[q](_reordered(questions()[q], []))
            require(len(found.item_ids) == 0, f"annotate_{q} about no items gave {len(found.item_ids)} answers")
    return contract.report()


@silenced()
def check_concept_extractor(extractor: components.ConceptExtractor, model: Classifier | None = None, train: ImageSet | None = None) -> Report:
    """Check ``extractor`` against :data:`PROMISES` ``["concept_extractor"]`` on ``model`` (default: a
    seeded tiny model) and ``train`` (default: 24 tiny images)."""
    contract = _Contract("concept_extractor", extractor)
    contract.check_options()
    model = model if model is not None else tiny_model()
    train = train if train is not None else tiny_image_set()
    before = _snapshot(model)
    concepts = _Once(lambda: extractor.extract(model, train))
    with torch.no_grad():
        grid = tuple(model.features(train.images[:1]).shape[-2:])
    neurons = len(model.neuron_mask)

    with contract.promise("describes-every-neuron"):
        found = concepts()
        require(isinstance(found, NeuronConcepts), f"extract returned {type(found).__name__}, not NeuronConcepts")
        require(len(found) == neurons, f"{len(found)} neurons described, the model has {neurons}")
        require(len(set(found.neuron_ids)) == neurons, "neuron ids repeat")
        require(tuple(found.activations.shape) == (len(train), neurons), f"activations {tuple(found.activations.shape)}, expected ({len(train)}, {neurons})")
    with contract.promise("indices-in-range"):
        found = concepts()
        top = found.top_images
        require(bool(((top >= 0) & (top < len(train))).all()), "top images index outside the training split")
        require(all(len(set(row.tolist())) == len(row) for row in top), "a neuron lists one image twice")
        require(found.grid == grid, f"grid {found.grid}, the model's feature grid is {grid}")
        require(found.image_size == train.image_size, f"image_size {found.image_size}, the images are {train.image_size}")
        cells, boxes = found.cells, found.boxes
        require(bool(((cells >= 0) & (cells < torch.tensor(grid))).all()), "cells outside the feature grid")
        height, width = found.image_size
        inside = (boxes[..., 0] >= 0) & (boxes[..., 1] >= 0) & (boxes[..., 2] <= height) & (boxes[..., 3] <= width)
        require(bool((inside & (boxes[..., 0] < boxes[..., 2]) & (boxes[..., 1] < boxes[..., 3])).all()), "boxes empty or outside the image")
    with contract.promise("strongest-first"):
        found = concepts()
        require(bool((found.top_activations[:, :-1] >= found.top_activations[:, 1:]).all()), "top activations increase along k")
        expected = found.activations.T.gather(1, found.top_images)
        require(torch.allclose(found.top_activations, expected), "top activations are not the listed images' activations")
    with contract.promise("deterministic"):
        again = extractor.extract(model, train)
        require(torch.equal(again.top_images, concepts().top_images) and torch.equal(again.activations, concepts().activations), "a second extraction differs")
    with contract.promise("leaves-the-model-untouched"):
        require((difference := _unchanged(model, before)) is None, f"extracting {difference}")
    return contract.report()


@silenced()
def check_backbone(backbone: components.Backbone, images: Tensor | None = None) -> Report:
    """Check ``backbone`` against :data:`PROMISES` ``["backbone"]`` on ``images`` (default: four 32×32
    tiny images; pass larger ones for backbones whose feature grid would vanish)."""
    contract = _Contract("backbone", backbone)
    contract.check_options()
    images = images if images is not None else _images(n=4, size=32)

    def build(k: int = 2, seed: int = 0) -> Classifier:
        torch.manual_seed(seed)
        return backbone.build(k).eval()

    model = _Once(build)
    with contract.promise("builds-a-classifier"):
        for k in (2, 3):
            built = model() if k == 2 else build(k)
            require(isinstance(built, Classifier), f"build({k}) returned {type(built).__name__}, not a Classifier")
            with torch.no_grad():
                logits = built(images)
            require(tuple(logits.shape) == (len(images), k), f"build({k}) gives logits {tuple(logits.shape)}, expected ({len(images)}, {k})")
            require(bool(torch.isfinite(logits).all()), f"build({k}) gives non-finite logits")
    with contract.promise("splits-at-the-feature-map"), torch.no_grad():
        m = model()
        features = m.features(images)
        require(features.ndim == 4 and features.shape[1] == len(m.neuron_mask), f"features {tuple(features.shape)}, expected (B, {len(m.neuron_mask)}, h, w)")
        require(torch.allclose(m(images), m.classifier(m.pool(features)), atol=1e-5), "forward differs from classifier(pool(features))")
    with contract.promise("masks-neurons"), torch.no_grad():
        m = copy.deepcopy(model())
        require(any(k.endswith("feature_map.mask") for k in m.state_dict()), "the neuron mask is not in the state dict")
        m.neuron_mask[0] = 0
        require(bool((m.features(images)[:, 0] == 0).all()), "zeroing neuron 0's mask leaves channel 0 of the features non-zero")
    with contract.promise("batch-independent"), torch.no_grad():
        m = model()
        gap = float((torch.cat([m(images[i : i + 1]) for i in range(len(images))]) - m(images)).abs().max())
        require(gap <= 1e-4, f"logits change by up to {gap:.3g} when each image is run alone")
    with contract.promise("seeded-build"):
        require((difference := _same_weights(build(seed=3), build(seed=3))) is None, f"two builds under torch seed 3 differ: {difference}")
    with contract.promise("trainable-features"):
        m = copy.deepcopy(model())
        m(images).logsumexp(dim=1).sum().backward()
        head = {id(p) for p in m.classifier.parameters()}
        require(any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters() if id(p) not in head), "no gradient reaches the layers before the classifier")
    return contract.report()


@silenced()
def check_dataset(dataset: components.Dataset) -> Report:
    """Check ``dataset`` against :data:`PROMISES` ``["dataset"]`` (it loads every split twice: give it
    small options)."""
    contract = _Contract("dataset", dataset)
    contract.check_options()
    answers = _Once(lambda: (dataset.has_masks(), dataset.has_groups()))
    try:
        answers()  # before any split is loaded: the answers must not need the images
    except Exception:  # noqa: BLE001, S110 - re-raised inside its promise
        pass
    splits = _Once(lambda: {s: dataset.load(s) for s in dataset.splits})

    with contract.promise("loads-every-split"):
        for name, split in splits().items():
            require(isinstance(split, ImageSet), f"load({name!r}) returned {type(split).__name__}, not an ImageSet")
    with contract.promise("images-in-unit-range"):
        for name, split in splits().items():
            for _, images in split.images.batches():
                require(images.dtype == torch.float32, f"{name} images are {images.dtype}, not float32")
                require(tuple(images.shape[1:]) == split.images.shape[1:], f"{name} images are {tuple(images.shape[1:])}, the split says {split.images.shape[1:]}")
                require(bool(torch.isfinite(images).all()) and float(images.min()) >= 0 and float(images.max()) <= 1, f"{name} images leave [0, 1]")
    with contract.promise("labels-and-groups-in-range"):
        for name, split in splits().items():
            for field, names in (("labels", split.class_names), ("spurious", split.spurious_names or ("",))):
                values = getattr(split, field)
                require(values.dtype == torch.int64 and bool(((values >= 0) & (values < len(names))).all()), f"{name} {field} are not int64 indices into {len(names)} names")
            masks = None if split.masks is None else split.masks[:2]
            require(masks is None or masks.dtype == torch.bool, f"{name} masks are {None if masks is None else masks.dtype}, not bool")
    with contract.promise("says-what-it-has"):
        masks, groups = answers()
        for name, split in splits().items():
            require((split.masks is not None) == masks, f"has_masks() is {masks}, and the {name} split has {'no ' * (split.masks is None)}masks")
            require(split.has_groups == groups, f"has_groups() is {groups}, and the {name} split has {'no ' * (not split.has_groups)}group attribute")
    with contract.promise("ids-unique-across-splits"):
        seen: dict[str, str] = {}
        for name, split in splits().items():
            for item in split.ids:
                require(item not in seen, f"id {item!r} is in both {seen.get(item)} and {name}")
                seen[item] = name
    with contract.promise("deterministic"):
        for name, split in splits().items():
            again = dataset.load(name)
            same = again.ids == split.ids and torch.equal(again.labels, split.labels) and all(
                torch.equal(a, b) for (_, a), (_, b) in zip(again.images.batches(), split.images.batches())
            )
            require(same, f"loading {name!r} twice gives different items")
    with contract.promise("rejects-unknown-splits"):
        try:
            dataset.load("no-such-split")
        except (ValueError, CrayonError) as error:
            require("no-such-split" in str(error), f"the error for an unknown split does not name it: {error}")
        else:
            raise Broken("load('no-such-split') succeeded")
    return contract.report()


def _shuffled(predictions: components.Predictions, order: Tensor) -> components.Predictions:
    s = predictions.split
    split = replace(s, images=s.images[order], labels=s.labels[order], spurious=s.spurious[order], masks=None if s.masks is None else s.masks[order], ids=tuple(s.ids[i] for i in order))
    answers, maps, original = (None if t is None else t[order] for t in (predictions.map_answers, predictions.maps, predictions.original_maps))
    return replace(predictions, split=split, predicted=predictions.predicted[order], map_answers=answers, maps=maps, original_maps=original)


def _seeded_maps(n: int, seed: int) -> Tensor:
    """``(n, 4, 4)`` seeded max-normalised maps, the first all zero (as an interpreter may give)."""
    maps = normalise_maps(torch.rand(n, 4, 4, generator=torch.Generator().manual_seed(seed)))
    maps[0] = 0
    return maps


def _numbers(found: Any) -> dict[str, float]:
    """A metric's result flattened to ``name → float`` (``Broken`` if it is not named numbers)."""
    require(isinstance(found, dict) and found, f"compute returned {type(found).__name__}, not a non-empty mapping")
    flat = {}
    for name, value in found.items():
        require(isinstance(name, str), f"name {name!r} is not a string")
        inner = value if isinstance(value, dict) else {"": value}
        for sub, number in inner.items():
            require(isinstance(sub, str) and isinstance(number, (int, float)) and not isinstance(number, bool), f"{name}{'.' + str(sub) if sub else ''} is {number!r}, not a number")
            require(math.isfinite(number) or math.isnan(number), f"{name} is infinite")
            flat[f"{name}.{sub}" if sub else name] = float(number)
    json.dumps(found)
    return flat


@silenced()
def check_metric(metric: components.Metric, predictions: components.Predictions | None = None) -> Report:
    """Check ``metric`` against :data:`PROMISES` ``["metric"]`` on ``predictions`` (default: seeded
    predictions on 24 tiny test images in four groups, with object masks, with map answers and
    seeded maps if the metric needs them, and likewise on each evaluation split it reads)."""
    contract = _Contract("metric", metric)
    contract.check_options()
    if predictions is None:
        g = torch.Generator().manual_seed(0)

        def predicted(name: str, seed: int) -> components.Predictions:
            split = tiny_image_set(split=name, seed=seed)
            return components.Predictions(split, torch.randint(0, 2, (len(split),), generator=g), split.group_shares())

        others = {name: predicted(name, 10 + i) for i, name in enumerate(type(metric).evaluation_splits)}
        test = predicted("test", 0)
        answers = mixed_answers(len(test.split)) if Need.MAP_ANSWERS in type(metric).needs else None
        maps = (_seeded_maps(len(test.split), 0), _seeded_maps(len(test.split), 1)) if Need.MAPS in type(metric).needs else (None, None)
        predictions = replace(test, map_answers=answers, others=others, maps=maps[0], original_maps=maps[1])
    pristine = copy.deepcopy(predictions)
    compute = lambda p: _numbers(metric.compute(copy.deepcopy(p)))  # noqa: E731 - each call on its own copy
    result = _Once(lambda: compute(pristine))

    with contract.promise("declares-known-needs"):
        unknown = set(type(metric).needs) - components.METRIC_NEEDS
        require(not unknown, f"needs {sorted(unknown)}, which the pipeline never prepares; known: {sorted(components.METRIC_NEEDS)}")
    with contract.promise("returns-named-numbers"):
        result()
    with contract.promise("deterministic"):
        require(compute(pristine) == result(), "a second computation differs")
    with contract.promise("order-invariant"):
        n = len(predictions.predicted)
        for order in (torch.arange(n).flip(0), torch.randperm(n, generator=torch.Generator().manual_seed(1))):
            found, expected = compute(_shuffled(pristine, order)), result()
            same = lambda k: k in found and (math.isclose(found[k], expected[k], rel_tol=1e-9, abs_tol=1e-12) or math.isnan(found[k]) and math.isnan(expected[k]))  # noqa: E731
            require(not (differ := [k for k in expected if not same(k)]), f"reordering the items changes {', '.join(differ[:3])}")
    with contract.promise("leaves-predictions-untouched"):
        metric.compute(predictions)
        tensors = lambda p: [p.predicted, p.train_group_shares, p.split.images.all(), p.split.labels, p.split.spurious] + [t for t in (p.map_answers, p.maps, p.original_maps) if t is not None]  # noqa: E731
        require(all(torch.equal(a, b) for a, b in zip(tensors(pristine), tensors(predictions))), "compute modified its predictions")
    return contract.report()


CHECKS: dict[str, Callable[..., Report]] = {name: globals()[kind.check] for name, kind in KINDS.items()}
"""Component kind → its check (named in :data:`crayon_plugins.registry.KINDS`)."""


def registered(kind: str, name: str) -> Registration:
    """How the installed plugins register ``name`` of ``kind`` (its class, module and plugin), as
    ``crayon list`` shows it: a plugin's own test checks its entry point with it."""
    return default_registry().get(kind, name)

