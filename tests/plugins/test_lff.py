"""Learning from Failure: the generalized cross-entropy, the per-item moving averages and the
relative-difficulty weights worked by hand, GCE's gradient as a property, and one refinement on the
tiny pipeline training a biased and a debiased model from scratch."""

import math

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.lff import LossAverages, generalized_cross_entropy, relative_difficulty
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner


def test_generalized_cross_entropy_by_hand():
    """Logits (0, ln 3) with label 1: p = (0.25, 0.75), CE = −ln 0.75 = 0.287682, p_y^0.7 =
    exp(0.7·ln 0.75) = 0.817604, so GCE = 0.287682 · 0.7 · 0.817604 = 0.164647. Its gradient is
    0.7 · 0.817604 · (p − onehot) = 0.572323 · (0.25, −0.25) = (0.143081, −0.143081), CE's times q·p_y^q
    (the paper's (1 − p_y^q)/q would give CE's times p_y^q = 0.817604)."""
    logits = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    loss = generalized_cross_entropy(logits, torch.tensor([1]), 0.7)
    assert float(loss.detach()) == pytest.approx(0.164647, abs=1e-6)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert grad[0].tolist() == pytest.approx([0.143081, -0.143081], abs=1e-6)


def test_moving_averages_by_hand():
    """α = 0.7. Item 0 sees losses 2, 1, 0.5: the first visit sets 2, then 0.7·2 + 0.3·1 = 1.7, then
    0.7·1.7 + 0.3·0.5 = 1.34. Item 1 (class 0) sees 0.5 once; item 2 (class 1) 0.2 once; item 3 (class
    1) is never visited and counts 0. Class maxima (1.34, 0.2): item 1 normalises to 0.5 / 1.34."""
    averages = LossAverages(torch.tensor([0, 0, 1, 1]), 2, 0.7)
    averages.update(torch.tensor([2.0, 0.5, 0.2]), torch.tensor([0, 1, 2]))
    averages.update(torch.tensor([1.0]), torch.tensor([0]))
    averages.update(torch.tensor([0.5]), torch.tensor([0]))
    assert averages.average.tolist() == pytest.approx([1.34, 0.5, 0.2, 0.0])
    assert averages.class_max().tolist() == pytest.approx([1.34, 0.2])
    assert averages.normalised(torch.tensor([1, 2, 3])).tolist() == pytest.approx([0.5 / 1.34, 1.0, 0.0])


def test_relative_difficulty_by_hand():
    """Biased model's class-normalised averages (0.5, 1, 0), the debiased model's (0.5, 0.2, 0):
    W = 0.5 / 1, 1 / 1.2 and 0 / 1e-8 = (0.5, 0.8333, 0): an item only the biased model fails on is
    weighted up, and one neither has seen is weighted 0."""
    weight = relative_difficulty(torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0.5, 0.2, 0.0]))
    assert weight.tolist() == pytest.approx([0.5, 1 / 1.2, 0.0], abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.floats(-8, 8, width=32), min_size=3, max_size=3), min_size=1, max_size=6),
    st.data(),
    st.floats(0.1, 1.0),
)
def test_gce_gradient_is_cross_entropys_scaled_by_q_p_to_the_q(rows, data, q):
    logits = torch.tensor(rows, requires_grad=True)
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=len(rows), max_size=len(rows))))
    (gce,) = torch.autograd.grad(generalized_cross_entropy(logits, labels, q).sum(), logits)
    (ce,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), logits)
    p_y = F.softmax(logits.detach(), dim=1).gather(1, labels[:, None])
    assert torch.allclose(gce, ce * q * p_y**q, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8))
def test_weights_lie_in_the_unit_interval(pairs):
    biased, debiased = torch.tensor(pairs).T
    weight = relative_difficulty(biased, debiased)
    assert bool(((weight >= 0) & (weight <= 1)).all())  # float32's 1 / (1 + 1e-8) is 1
    assert bool((weight[biased > debiased + 1e-6] > 0.5).all()) and bool((weight[biased < debiased] < 0.5).all())


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return original_and_context(tiny_pipeline(tmp_path_factory.mktemp("cache"), refiners=["lff"]))


def test_lff_trains_a_biased_and_a_debiased_model_from_scratch(original):
    model, context = original
    built = []
    build = context.build_model
    counting = type(context)(**{**vars(context), "build_model": lambda: built.append(1) or build()})
    refined = create_refiner("lff", {"epochs": 1}).refine(model, counting)
    assert len(built) == 2  # the biased and the debiased model both start new
    assert all(torch.isfinite(v).all() for v in refined.state_dict().values() if v.is_floating_point())
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
    assert not torch.equal(refined.classifier.weight, build().classifier.weight)
    epochs = context.selection.curve.training
    assert len(epochs) == 1 and {"gce_biased", "weighted_ce_debiased", "weight"} <= set(epochs[0])
    assert all(0 < e["weight"] < 1 for e in epochs)

    built.clear()
    from_original = create_refiner("lff", {"epochs": 1, "start": "original"}).refine(model, counting)
    assert len(built) == 1  # only the biased model is new
    assert not torch.equal(from_original.classifier.weight, model.classifier.weight)
