"""The plugin kit's contract checks: every built-in keeps its promises; broken components are named."""

from __future__ import annotations

import copy
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from crayon_plugins.oracles.saliency import SaliencyOracle
from crayon_plugins.plugins.concepts.top_patches import TopPatches
from crayon_plugins.plugins.datasets.spurious_bars import SpuriousBars
from crayon_plugins.plugins.interpreters.captum import CaptumSaliency
from crayon_plugins.plugins.metrics.groups import GroupAccuracy
from crayon_plugins.plugins.refiners.crayon_attention import CrayonAttention
from crayon_plugins.plugins.refiners.crayon_pruning import CrayonPruning, prune
from crayon_plugins.plugins.refiners.finetune import FineTune
from hypothesis import given, settings

from crayon_plugins.annotation.records import NOT_ANNOTATED, Annotations, Answer
from crayon_plugins.api.components import AnnotationSource, Metric, Predictions
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.factory import create
from crayon_plugins.model.gradcam import GradCam
from crayon_plugins.model.maps import normalise_maps
from crayon_plugins.registry import default_registry
from crayon_plugins.testing import CHECKS, PROMISES, ContractError, TinyBackbone, TinyClassifier, strategies, tiny_answer_files, tiny_model
from crayon_plugins.testing.benchmark_folders import write_backgrounds_challenge, write_biased_celeba, write_waterbirds
from crayon_plugins.testing.user_folders import write_csv_table, write_image_folder
from crayon_plugins.training.loop import fit

USER_MODEL = """
from torch import nn


def build(num_classes=2):
    net = nn.Sequential()
    net.layer1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    net.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.flatten = nn.Flatten()
    net.fc = nn.Linear(16, num_classes)
    return net
"""
"""A user's own network, in a file outside any package, for the ``module`` backbone."""


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """Small options for the built-in datasets: the real benchmarks as tiny generated folders."""
    root = tmp_path_factory.mktemp("benchmarks")
    write_waterbirds(root / "waterbirds", 8, 4, 4, image_size=32)
    write_biased_celeba(root / "celeba", n_train=8, n_test=8, image_size=32)
    write_backgrounds_challenge(root / "backgrounds", per_class=2, image_size=32)
    write_image_folder(root / "image-folder", per_class=4, masks=True)
    write_csv_table(root / "csv", ["a", "b"] * 6, ["train", "val", "test"] * 4, groups=[0, 0, 1, 1] * 3)
    folder = lambda name: {"root": str(root / name), "image_size": 32}  # noqa: E731
    answers = tiny_answer_files(root / "answers")
    (root / "user_model.py").write_text(USER_MODEL)
    return {
        ("backbone", "module"): {"factory": f"{root / 'user_model.py'}:build", "target_layer": "layer2", "image_size": 32},
        ("annotation_source", "human"): {"answers": [str(p) for p in answers]},
        ("dataset", "spurious-bars"): {"n_train": 16, "n_val": 8, "n_test": 8, "image_size": 32},
        ("dataset", "waterbirds"): folder("waterbirds"),
        ("dataset", "biased-celeba"): folder("celeba"),
        ("dataset", "backgrounds-challenge"): folder("backgrounds"),
        ("dataset", "image-folder"): {**folder("image-folder"), "masks": "masks"},
        ("dataset", "csv"): folder("csv"),
    }


@pytest.fixture(scope="session")
def outcomes(small):
    """Each built-in's check, run once: (kind, name) → promise → ``None`` (kept or not applicable)
    or what broke it."""
    found = {}

    def outcome(registration):
        key = (registration.kind, registration.name)
        if key not in found:
            component = create(registration.kind, registration.name, small.get(key))
            try:
                report = CHECKS[registration.kind](component)
                found[key] = dict.fromkeys([*report.kept, *report.skipped])
            except ContractError as error:
                found[key] = {**dict.fromkeys(error.kept), **{b.promise: b.detail for b in error.broken}}
        return found[key]

    return outcome


BUILTIN_PROMISES = [(r, promise) for r in default_registry().all() for promise in PROMISES[r.kind]]


@pytest.mark.parametrize(("registration", "promise"), BUILTIN_PROMISES, ids=[f"{r.kind}:{r.name}:{promise}" for r, promise in BUILTIN_PROMISES])
def test_every_builtin_keeps_every_promise_of_its_kind(registration, promise, outcomes):
    """One test id per (built-in, promise), as scikit-learn's ``parametrize_with_checks`` gives."""
    found = outcomes(registration)
    assert promise in found, f"the check of {registration.kind} {registration.name!r} did not report {promise!r}"
    assert found[promise] is None, f"{registration.kind} {registration.name!r} broke {promise!r}: {found[promise]}"


def test_the_tiny_backbone_keeps_every_promise():
    assert len(CHECKS["backbone"](TinyBackbone()).kept) == len(PROMISES["backbone"])


# --- refiners that each break one promise -------------------------------------------------------


class MutatesTheOriginal(FineTune):
    def refine(self, model, context):
        fit(model, lambda i, x: torch.nn.functional.cross_entropy(model(x), context.train.labels[i]), len(context.train), self.params, context.seed, "x", images=context.train.images)
        return copy.deepcopy(model)


class NaNOnZeroMaps(CrayonAttention):
    """The energy loss without the EPS that keeps an all-zero original map finite."""

    def refine(self, model, context):
        refined = copy.deepcopy(model)

        def loss(i, x):
            current, logits = self.interpreter.explain(refined, x, context.train.labels[i])
            original = context.original_maps[i]
            l_no = (current * original).sum(dim=(1, 2)) / original.sum(dim=(1, 2)) * (context.map_answers[i] == Answer.NO)
            return torch.nn.functional.cross_entropy(logits, context.train.labels[i]) + l_no.mean()

        fit(refined, loss, len(context.train), self.params, context.seed, "x", images=context.train.images)
        return refined


class MaybeMeansYes(CrayonAttention):
    def refine(self, model, context):
        answers = torch.where(context.map_answers == Answer.MAYBE, int(Answer.YES), context.map_answers)
        return super().refine(model, type(context)(**{**context.__dict__, "map_answers": answers}))


class Unseeded(FineTune):
    def refine(self, model, context):
        refined = super().refine(model, context)
        with torch.no_grad():
            refined.classifier.bias.add_(torch.from_numpy(np.random.default_rng().random(2)).float())
        return refined


class NeedsSomethingUnknown(FineTune):
    needs = frozenset({"human-masks"})


class CrashesWithoutNeuronAnswers(CrayonPruning):
    def refine(self, model, context):
        return self.retrained(prune(model, context.neurons.answers), context)  # AttributeError on None instead of a clear CrayonError


class PenaltyAlwaysZero(CrayonAttention):
    """Its energy terms read every answer as *maybe* (a code mix-up), so the penalty is identically
    zero and it refines exactly as ``finetune``."""

    def prepare(self, model, context):
        return replace(super().prepare(model, context), answers=torch.full_like(context.map_answers, Answer.MAYBE), n_no=0, n_yes=0)


class ThirdDerivatives(FineTune):
    """Penalises the curvature of the input gradients: training differentiates the model three times,
    which batch norm in train mode refuses."""

    def loss(self, model, batch, prepared):
        images = batch.images.detach().requires_grad_(True)
        logits = model(images)
        (slope,) = torch.autograd.grad(logits.logsumexp(dim=1).sum(), images, create_graph=True)
        (curvature,) = torch.autograd.grad(slope.pow(2).sum(), images, create_graph=True)
        return self.prediction_loss(logits, batch) + curvature.pow(2).mean()


class ReturnsTheHead(FineTune):
    def refine(self, model, context):
        return copy.deepcopy(model.classifier)


class LooseOptions(FineTune):
    class Params(FineTune.Params):
        model_config = {**FineTune.Params.model_config, "extra": "allow"}


BROKEN_REFINERS = [
    (MutatesTheOriginal(), {"leaves-the-original-untouched"}),
    (NaNOnZeroMaps(), {"finite-on-all-zero-maps", "accepts-maps-of-any-grid"}),
    (MaybeMeansYes(), {"maybe-adds-nothing"}),
    (Unseeded(), {"deterministic-under-seed", "maybe-adds-nothing"}),
    (NeedsSomethingUnknown(), {"declares-known-needs"}),
    (CrashesWithoutNeuronAnswers(), {"clear-error-without-annotations"}),
    (PenaltyAlwaysZero(), {"answers-change-the-model"}),
    (ThirdDerivatives(), {"works-on-batch-norm"}),
    (ReturnsTheHead(), {"returns-a-classifier", "accepts-maps-of-any-grid", "works-on-batch-norm"}),
    (LooseOptions(), {"options-are-validated"}),
]


def test_the_report_says_how_a_promise_broke():
    with pytest.raises(ContractError) as caught:
        CHECKS["refiner"](CrashesWithoutNeuronAnswers())
    assert "without neuron-answers, refine raised AttributeError" in str(caught.value)
    assert "broke 1 of 11 promises" in str(caught.value)


def test_the_report_names_the_models_checked_on_and_the_promises_that_do_not_apply():
    """A refiner without annotation needs skips ``answers-change-the-model``; with the caller's own
    model the check runs on that one only, and skips ``works-on-batch-norm``."""
    plain = CHECKS["refiner"](FineTune())
    assert plain.models == ("tiny_model()", "tiny_model(batch_norm=True)")
    assert plain.skipped == ("answers-change-the-model",)
    own = CHECKS["refiner"](CrayonAttention(CrayonAttention.Params(epochs=1)), model=tiny_model(seed=1))
    assert own.models == ("the given TinyClassifier",)
    assert own.skipped == ("works-on-batch-norm",)
    assert len(own.kept) == len(PROMISES["refiner"]) - 1


def test_the_batch_norm_tiny_model_has_two_batch_norms_and_keeps_the_backbone_contract():
    model = tiny_model(batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_model().modules())
    assert len(CHECKS["backbone"](TinyBackbone(TinyBackbone.Params(batch_norm=True))).kept) == len(PROMISES["backbone"])


# --- interpreters ---------------------------------------------------------------------------------


class Unnormalised(CaptumSaliency):
    def __call__(self, model, images, targets):
        return super().__call__(model, images, targets) * 3.0


class MixesTheBatch(GradCam):
    def explain(self, model, images, targets):
        maps, logits = super().explain(model, images, targets)
        return normalise_maps(maps + 0.5 * maps.mean(dim=0, keepdim=True)), logits


class NaNOnBlankImages(CaptumSaliency):
    """Gradient × input normalised without EPS: a black image's map is 0 / 0."""

    def __call__(self, model, images, targets):
        images = images.clone().requires_grad_(True)
        with torch.enable_grad():
            (grads,) = torch.autograd.grad(model(images).gather(1, targets[:, None]).sum(), images)
        raw = (grads * images).sum(dim=1).relu().detach()
        return raw / raw.amax(dim=(1, 2), keepdim=True)


class LeavesGradients(CaptumSaliency):
    def __call__(self, model, images, targets):
        model(images).sum().backward()
        return super().__call__(model, images, targets)


class ChannelFirst(CaptumSaliency):
    def __call__(self, model, images, targets):
        return super().__call__(model, images, targets)[:, None]


class DetachedExplain(GradCam):
    def explain(self, model, images, targets):
        maps, logits = super().explain(model, images, targets)
        return maps.detach(), logits


BROKEN_INTERPRETERS = [
    (Unnormalised(), {"maps-are-normalised", "finite-on-blank-images"}),
    (MixesTheBatch(), {"batch-independent"}),
    (NaNOnBlankImages(), {"finite-on-blank-images"}),
    (LeavesGradients(), {"leaves-the-model-untouched"}),
    (ChannelFirst(), {"maps-have-the-documented-shape"}),
    (DetachedExplain(), {"differentiable-maps"}),
]


# --- annotation sources ---------------------------------------------------------------------------


class JudgesNothing(AnnotationSource):
    pass


class AnswersByPosition(SaliencyOracle):
    def annotate_maps(self, items):
        return Annotations(items.ids, torch.arange(len(items.ids)) % 3, ("p",) * len(items.ids))


class AnswersTwice(SaliencyOracle):
    def annotate_maps(self, items):
        found = super().annotate_maps(items)
        return Annotations(found.item_ids * 2, found.answers.repeat(2), found.annotators * 2)


class CoinFlips(SaliencyOracle):
    def annotate_maps(self, items):
        return Annotations(items.ids, torch.randint(0, 3, (len(items.ids),)), ("coin",) * len(items.ids))


class FailsOnNoItems(SaliencyOracle):
    def annotate_maps(self, items):
        found = super().annotate_maps(items)
        found.answers.max()  # max of an empty tensor raises
        return found


BROKEN_ANNOTATION_SOURCES = [
    (JudgesNothing(), {"judges-something"}),
    (AnswersByPosition(), {"order-independent"}),
    (AnswersTwice(), {"answers-what-it-is-asked"}),
    (CoinFlips(), {"deterministic", "order-independent"}),
    (FailsOnNoItems(), {"handles-no-items"}),
]


# --- concept extractors, backbones, datasets, metrics --------------------------------------------


class WeakestFirst(TopPatches):
    def extract(self, model, train):
        c = super().extract(model, train)
        return type(c)(**{**c.__dict__, "top_images": c.top_images.flip(1), "top_activations": c.top_activations.flip(1), "cells": c.cells.flip(1), "boxes": c.boxes.flip(1)})


class WrongGrid(TopPatches):
    def extract(self, model, train):
        return type(c := super().extract(model, train))(**{**c.__dict__, "grid": (1, 1)})


BROKEN_CONCEPT_EXTRACTORS = [(WeakestFirst(), {"strongest-first"}), (WrongGrid(), {"indices-in-range"})]


class BypassesTheMask(TinyClassifier):
    def features(self, images):
        return self.forward_features((images - self.mean) / self.std)


class UnmaskedBackbone(TinyBackbone):
    def build(self, num_classes):
        return BypassesTheMask(self.params.channels, self.params.stride, num_classes)


class FrozenFeatures(TinyBackbone):
    def build(self, num_classes):
        model = super().build(num_classes)
        model.body.requires_grad_(False)
        return model


class UnseededBackbone(TinyBackbone):
    def build(self, num_classes):
        model = super().build(num_classes)
        with torch.no_grad():
            model.classifier.bias.copy_(torch.randn(num_classes, generator=torch.Generator().manual_seed(torch.seed())))
        return model


BROKEN_BACKBONES = [(UnmaskedBackbone(), {"masks-neurons"}), (FrozenFeatures(), {"trainable-features"}), (UnseededBackbone(), {"seeded-build"})]


SMALL_BARS = SpuriousBars.Params(n_train=16, n_val=8, n_test=8, image_size=32)


class ByteImages(SpuriousBars):
    def load(self, split):
        s = super().load(split)
        return ImageSet(**{**s.__dict__, "images": s.images.all() * 255})


class SameIdsEverywhere(SpuriousBars):
    def load(self, split):
        s = super().load(split)
        return ImageSet(**{**s.__dict__, "ids": tuple(f"item-{i}" for i in range(len(s)))})


class AnySplitIsTrain(SpuriousBars):
    def load(self, split):
        return super().load(split if split in self.splits else "train")


BROKEN_DATASETS = [(ByteImages(SMALL_BARS), {"images-in-unit-range"}), (SameIdsEverywhere(SMALL_BARS), {"ids-unique-across-splits"}), (AnySplitIsTrain(SMALL_BARS), {"rejects-unknown-splits"})]


class FirstCorrectItem(Metric):
    def compute(self, predictions: Predictions):
        return {"first-correct": float((predictions.predicted == predictions.split.labels).int().argmax())}


class TensorValues(GroupAccuracy):
    def compute(self, predictions):
        return {"wga": torch.tensor(0.5)}


class SortsInPlace(Metric):
    def compute(self, predictions):
        predictions.predicted.copy_(predictions.predicted.sort().values)
        return {"ones": float(predictions.predicted.sum())}


class NeedsCaptions(GroupAccuracy):
    needs = frozenset({"captions"})


BROKEN_METRICS = [
    (FirstCorrectItem(), {"order-invariant"}),
    (TensorValues(), {"returns-named-numbers", "deterministic", "order-invariant"}),
    (SortsInPlace(), {"leaves-predictions-untouched"}),
    (NeedsCaptions(), {"declares-known-needs"}),
]


@pytest.mark.parametrize(
    ("kind", "component", "broken"),
    [
        (kind, component, broken)
        for kind, cases in {
            "refiner": BROKEN_REFINERS,
            "interpreter": BROKEN_INTERPRETERS,
            "annotation_source": BROKEN_ANNOTATION_SOURCES,
            "concept_extractor": BROKEN_CONCEPT_EXTRACTORS,
            "backbone": BROKEN_BACKBONES,
            "dataset": BROKEN_DATASETS,
            "metric": BROKEN_METRICS,
        }.items()
        for component, broken in cases
    ],
    ids=lambda v: v if isinstance(v, str) else "" if isinstance(v, set) else type(v).__name__,
)
def test_a_broken_component_fails_naming_exactly_the_promises_it_breaks(kind, component, broken):
    with pytest.raises(ContractError) as caught:
        CHECKS[kind](component)
    assert {b.promise for b in caught.value.broken} == broken
    assert all(f"- {name}:" in str(caught.value) for name in broken)
    assert caught.value.component == type(component).__qualname__


# --- the strategies draw what they promise ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(maps=strategies.saliency_maps())
def test_drawn_maps_are_normalised_and_include_the_edge_cases(maps):
    peaks = maps.flatten(1).amax(dim=1)
    assert maps.ndim == 3 and bool((maps >= 0).all()) and bool(((peaks - 1).abs() < 1e-5).logical_or(peaks == 0).all())


def test_the_strategies_reach_their_edge_cases():
    from hypothesis import find

    assert find(strategies.saliency_maps(), lambda m: bool((m == 0).all())).abs().sum() == 0
    assert int((find(strategies.saliency_maps(), lambda m: int((m > 0).sum()) == 1 and m.numel() > 1) > 0).sum()) == 1
    assert len(find(strategies.annotation_sets(), lambda a: len(a.answers) == 0).item_ids) == 0
    everything_maybe = find(strategies.annotation_sets(), lambda a: len(a.answers) > 2 and bool((a.answers == Answer.MAYBE).all()))
    assert set(everything_maybe.answers.tolist()) == {int(Answer.MAYBE)}
    assert bool((find(strategies.answer_codes(), lambda a: len(a) > 1 and bool((a == NOT_ANNOTATED).all())) == NOT_ANNOTATED).all())
    assert find(strategies.object_masks(), lambda m: bool(m.all())).all()
    assert find(strategies.tiny_image_sets(), lambda s: s.masks is None).masks is None


@settings(max_examples=20, deadline=None)
@given(backbone=strategies.tiny_backbones(), images=strategies.tiny_image_sets())
def test_drawn_backbones_classify_drawn_image_sets(backbone, images):
    model = backbone.build(len(images.class_names)).eval()
    assert model(images.images.all()).shape == (len(images), len(images.class_names))
    assert model.features(images.images.all()).shape[1] == backbone.params.channels


class SwitchesToTraining(GradCam):
    def explain(self, model, images, targets):
        model.train()
        return super().explain(model, images, targets)


def test_an_interpreter_that_leaves_the_model_in_training_mode_is_caught_even_on_its_first_call():
    with pytest.raises(ContractError) as caught:
        CHECKS["interpreter"](SwitchesToTraining())
    assert "leaves-the-model-untouched: explaining switched the model between train and eval mode" in str(caught.value)


# --- crayon check ------------------------------------------------------------------------------------


def test_crayon_check_prints_every_promise_kept_and_exits_0():
    from typer.testing import CliRunner

    from crayon_plugins.cli import app

    result = CliRunner().invoke(app, ["check", "refiner", "crayon-attention", "--options", '{"epochs": 1}'])
    assert result.exit_code == 0, result.output
    assert "11 of 11 promises kept" in result.stdout
    assert all(promise in result.stdout for promise in PROMISES["refiner"])
    assert "checked on tiny_model(), tiny_model(batch_norm=True)" in result.stdout


def test_crayon_check_names_the_broken_promise_of_a_registered_component_and_exits_1(monkeypatch):
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import crayon_plugins.factory
    from crayon_plugins import hookimpl
    from crayon_plugins.cli import app
    from crayon_plugins.registry import build_registry

    plugin = SimpleNamespace(crayon_refiners=hookimpl(lambda: {"mutates": MutatesTheOriginal}))
    registry = build_registry(extra_plugins={"careless": plugin}, builtins=True)
    monkeypatch.setattr(crayon_plugins.factory, "default_registry", lambda: registry)
    result = CliRunner().invoke(app, ["check", "refiner", "mutates"])
    assert result.exit_code == 1
    assert "9 of 10 promises kept" in result.stdout
    assert re.search(r"answers-change-the-model\s*│\s*not applicable", result.stdout)
    assert re.search(r"leaves-the-original-untouched\s*│\s*broken\s*│\s*refine changed", result.stdout)
