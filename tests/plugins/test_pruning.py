"""CRAYON-Pruning: the mask, what it leaves alone, and the two refiners that use it."""

import dataclasses
import io

import pytest
import torch
from crayon_plugins.plugins.backbones.timm import TimmStageClassifier
from crayon_plugins.plugins.refiners.crayon_pruning import prune
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_backbone, create_refiner
from crayon_plugins.annotation.records import NOT_ANNOTATED, Answer
from crayon_plugins.api.components import NeuronJudgements
from crayon_plugins.errors import CrayonError
from crayon_plugins.model.features import backbone_digest
from crayon_plugins.model.gradcam import GradCam
from crayon_plugins.run.stages.explain import concepts
from crayon_plugins.testing.tiny import annotations_of

IMAGES = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
CHANNELS = 128


def answers_pruning(channels):
    answers = torch.full((CHANNELS,), int(Answer.YES))
    answers[list(channels)] = Answer.NO
    return answers


@settings(max_examples=25, deadline=None)
@given(channels=st.sets(st.integers(0, CHANNELS - 1), min_size=1, max_size=20), value=st.floats(-1e4, 1e4))
def test_a_pruned_neuron_has_no_effect_on_the_logits_whatever_its_activation(tiny_model, channels, value):
    pruned = prune(tiny_model, answers_pruning(channels))
    expected = pruned(IMAGES)
    forward_features = pruned.forward_features

    def overwritten(normalised):
        features = forward_features(normalised).clone()
        features[:, list(channels)] = value
        return features

    pruned.forward_features = overwritten
    assert torch.equal(pruned(IMAGES), expected)
    maps = GradCam()(pruned, IMAGES, torch.zeros(4, dtype=torch.int64))
    pruned.forward_features = forward_features
    assert torch.equal(maps, GradCam()(pruned, IMAGES, torch.zeros(4, dtype=torch.int64)))  # nor on Grad-CAM


@settings(max_examples=25, deadline=None)
@given(answers=st.lists(st.sampled_from([Answer.YES, Answer.MAYBE, NOT_ANNOTATED]), min_size=CHANNELS, max_size=CHANNELS))
def test_no_irrelevant_answer_leaves_the_model_unchanged_before_retraining(tiny_model, answers):
    pruned = prune(tiny_model, torch.tensor([int(a) for a in answers]))
    assert torch.equal(pruned(IMAGES), tiny_model(IMAGES))
    assert bool((pruned.neuron_mask == 1).all())


def test_the_mask_survives_saving_and_loading_and_the_original_is_untouched(tiny_model):
    pruned = prune(tiny_model, answers_pruning({3, 7, 100}))
    buffer = io.BytesIO()
    torch.save(pruned.state_dict(), buffer)
    buffer.seek(0)
    loaded = create_backbone("timm", {"model": "resnet10t"}).build(2).eval()
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.nonzero(loaded.neuron_mask == 0).flatten().tolist() == [3, 7, 100]
    assert torch.equal(loaded(IMAGES), pruned(IMAGES))
    assert bool((tiny_model.neuron_mask == 1).all())


def test_answers_must_match_the_neurons(tiny_model):
    with pytest.raises(CrayonError, match="3 neuron answers for a model with 128 neurons"):
        prune(tiny_model, torch.ones(3, dtype=torch.int64))


def context_with_neuron_answers(pipeline, answers):
    model, context = original_and_context(pipeline)
    found = concepts(pipeline, model, context.train)
    neurons = NeuronJudgements(found, answers, annotations_of(found.neuron_ids, answers))
    return model, dataclasses.replace(context, neurons=neurons)


@pytest.mark.parametrize("shared", [True, False])
def test_crayon_pruning_retrains_only_the_classifier_on_features_extracted_once(tmp_path, monkeypatch, shared):
    model, context = context_with_neuron_answers(tiny_pipeline(tmp_path), answers_pruning(range(10)))
    if not shared:
        context = dataclasses.replace(context, features=None)
    passes = []
    forward_features = TimmStageClassifier.forward_features
    monkeypatch.setattr(TimmStageClassifier, "forward_features", lambda self, x: passes.append(len(x)) or forward_features(self, x))
    refined = create_refiner("crayon-pruning", {"epochs": 3}).refine(model, context)
    # the pipeline's shared pooled features of the original backbone: no pass; without them one batched
    # pass, not one per epoch
    assert passes == ([] if shared else [len(context.train)])
    assert torch.nonzero(refined.neuron_mask == 0).flatten().tolist() == list(range(10))
    original, after = model.state_dict(), refined.state_dict()
    assert all(torch.equal(original[k], after[k]) for k in original if k.startswith("body."))
    assert not torch.equal(original["classifier.weight"], after["classifier.weight"])
    assert bool((model.neuron_mask == 1).all())


def test_crayon_pruning_without_neuron_answers_says_so(tmp_path):
    model, context = original_and_context(tiny_pipeline(tmp_path))
    with pytest.raises(CrayonError, match="'crayon-pruning' needs neuron answers"):
        create_refiner("crayon-pruning").refine(model, context)


def test_attention_plus_pruning_keeps_the_mask_while_fine_tuning(tmp_path):
    model, context = context_with_neuron_answers(tiny_pipeline(tmp_path), answers_pruning({0, 5}))
    refined = create_refiner("crayon-attention+pruning", {"epochs": 1}).refine(model, context)
    assert torch.nonzero(refined.neuron_mask == 0).flatten().tolist() == [0, 5]
    with torch.no_grad():
        assert float(refined.features(IMAGES)[:, [0, 5]].abs().max()) == 0
    after = refined.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in model.state_dict().items() if k.startswith("body."))


def test_retrain_classifier_is_crayon_pruning_with_nothing_pruned(tmp_path):
    model, context = context_with_neuron_answers(tiny_pipeline(tmp_path), torch.full((CHANNELS,), int(Answer.YES)))
    control = create_refiner("retrain-classifier", {"epochs": 2}).refine(model, context)
    nothing_pruned = create_refiner("crayon-pruning", {"epochs": 2}).refine(model, context)
    assert all(torch.equal(v, nothing_pruned.state_dict()[k]) for k, v in control.state_dict().items())
    assert not torch.equal(control.classifier.weight, model.classifier.weight)


def test_the_backbone_digest_ignores_the_classifier_even_under_a_whole_timm_models_own_name():
    """A whole timm model holds its head twice (``classifier.*`` and ``body.fc.*``): retraining it
    must not stop the shared pooled features from covering the model."""
    model = create_backbone("timm", {"model": "resnet10t", "feature_stage": "whole"}).build(2)
    before = backbone_digest(model)
    with torch.no_grad():
        model.classifier.weight.add_(1)
    assert backbone_digest(model) == before
    with torch.no_grad():
        model.body.conv1[0].weight.add_(1)
    assert backbone_digest(model) != before
