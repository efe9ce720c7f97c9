"""Logit Correction (``lc``): the group prior, the corrected cross-entropy, GCE and group mixup as the
public code computes them, worked by hand; and one refinement of the tiny pipeline."""

import math

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.lff import generalized_cross_entropy
from crayon_plugins.plugins.refiners.logit_correction import (
    correction_matrix,
    group_mixup,
    logit_correction_loss,
    mixup_strength,
    prior_matrix,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner

FAST = settings(max_examples=60, deadline=None)


def test_the_logit_correction_by_hand():
    """Three items, τ = 0.1, η = 1. The auxiliary logits u/τ are (ln 3, 0), (ln 3, 0) and (0, ln 4):
    π = (0.75, 0.25), (0.75, 0.25), (0.2, 0.8); predictions a = 0, 0, 1; labels y = 0, 1, 1.

    M[0,0] = 0.75 / (1 + 1e-4), M[1,0] = 0.25 / 1.0001, M[1,1] = 0.8 / 1.0001, M[0,1] = 0 (no item).
    Columns normalised: P[:,0] = (0.75, 0.25), P[:,1] = (0, 1); item i's correction is P[:, a_i].
    With zero main logits, LC_i = CE(log(c_i + 1e-4), y_i):
    LC_1 = ln(1.0002 / 0.7501) = 0.28775, LC_2 = ln(1.0002 / 0.2501) = 1.38609,
    LC_3 = ln(1.0002 / 1.0001) = 0.0001; mean 0.55798."""
    tau = 0.1
    aux_logits = torch.tensor([[tau * math.log(3), 0.0], [tau * math.log(3), 0.0], [0.0, tau * math.log(4)]])
    labels = torch.tensor([0, 1, 1])
    probabilities = F.softmax(aux_logits / tau, dim=1)
    predicted = probabilities.argmax(dim=1)
    assert predicted.tolist() == [0, 0, 1]

    prior = prior_matrix(probabilities, labels, predicted, 2)
    assert torch.allclose(prior, torch.tensor([[0.75, 0.0], [0.25, 0.8]]) / 1.0001, atol=1e-6)
    corrections = correction_matrix(prior)
    assert torch.allclose(corrections, torch.tensor([[0.75, 0.0], [0.25, 1.0]]), atol=1e-6)

    per_item = corrections[:, predicted].T
    loss = logit_correction_loss(torch.zeros(3, 2), labels, per_item, eta=1.0)
    assert loss.tolist() == pytest.approx([0.28775, 1.38609, 0.0001], abs=2e-5)
    assert float(loss.mean()) == pytest.approx(0.55798, abs=2e-5)


def test_the_prior_moving_average():
    """The code's ``mv_batch``: M ← α·M_prev + (1 − α)·M_batch; α = 0.5 halves a fresh batch's M
    from zeros, and a cell the minibatch lacks decays by α."""
    probabilities = torch.tensor([[0.6, 0.4]])
    batch = prior_matrix(probabilities, torch.tensor([0]), torch.tensor([0]), 2)
    assert float(batch[0, 0]) == pytest.approx(0.6 / 1.0001)
    first = prior_matrix(probabilities, torch.tensor([0]), torch.tensor([0]), 2, torch.zeros(2, 2), 0.5)
    assert float(first[0, 0]) == pytest.approx(0.3 / 1.0001)
    second = prior_matrix(probabilities, torch.tensor([1]), torch.tensor([1]), 2, first, 0.5)
    assert float(second[0, 0]) == pytest.approx(0.15 / 1.0001) and float(second[1, 1]) == pytest.approx(0.2 / 1.0001)


def test_gce_by_hand():
    """Logits (ln 3, 0), label 0: p = 0.75; GCE = q·p^q·CE = 0.8 · 0.75^0.8 · ln(4/3) = 0.18283."""
    loss = generalized_cross_entropy(torch.tensor([[math.log(3), 0.0]]), torch.tensor([0]), q=0.8)
    assert float(loss) == pytest.approx(0.18283, abs=1e-5)


@FAST
@given(st.lists(st.floats(-4, 4), min_size=3, max_size=3), st.integers(0, 2), st.floats(0.1, 1.0))
def test_gce_has_the_gradient_of_one_minus_p_to_the_q_over_q(logits, label, q):
    """The code's form ``q·p^q·CE`` (p held constant) has gradient −q·p^q·∇log p; the GCE paper's
    ``(1 − p^q)/q`` has −p^(q−1)·∇p = −p^q·∇log p: the code trains on q times the paper's loss."""
    z = torch.tensor([logits], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([label])
    (code,) = torch.autograd.grad(generalized_cross_entropy(z, y, q).sum(), z)
    p = F.softmax(z, dim=1)[0, label]
    (paper,) = torch.autograd.grad((1 - p**q) / q, z)
    assert torch.allclose(code, q * paper, atol=1e-9)


@FAST
@given(st.lists(st.floats(-5, 5), min_size=4, max_size=4), st.lists(st.floats(0.01, 1.0), min_size=2, max_size=2), st.integers(0, 1))
def test_a_correction_equal_for_every_class_changes_nothing(logits, priors, label):
    """Softmax is invariant to adding one number to every logit: an item whose auxiliary model gives
    every class the same prior trains on plain cross-entropy; a larger prior of the label lowers it."""
    z = torch.tensor([logits[:2], logits[2:]])
    y = torch.tensor([label, label])
    flat = torch.tensor([[priors[0], priors[0]], [priors[1], priors[1]]])
    assert torch.allclose(logit_correction_loss(z, y, flat, eta=1.0), F.cross_entropy(z, y, reduction="none"), atol=1e-5)
    favoured = torch.full((2, 2), 0.1)
    favoured[:, label] = 0.9
    assert bool((logit_correction_loss(z, y, favoured, eta=1.0) < F.cross_entropy(z, y, reduction="none")).all())


@FAST
@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=4, max_size=4))  # a column clamps a mass below float32's normal range
def test_every_column_with_mass_sums_to_one(values):
    prior = torch.tensor(values).view(2, 2)
    columns = correction_matrix(prior).sum(dim=0)
    for total, mass in zip(columns.tolist(), prior.sum(dim=0).tolist()):
        assert total == pytest.approx(1.0 if mass > 0 else 0.0, abs=1e-6)


def test_group_mixup_mixes_each_item_with_a_minority_item_of_its_class():
    """Labels (0, 0, 1, 1), auxiliary predictions (0, 1, 1, 1): class 0's one minority item is item 1,
    so at λ = 0.75 item 0 becomes 0.75·x₀ + 0.25·x₁ and item 1 stays x₁; class 1 has no minority item
    and mixes within itself in a random order. Corrections mix alike: c₀ = (0.75, 0.25), c₁ = (0, 1)
    give (0.5625, 0.4375), and with zero logits LC = ln(1.0002 / 0.5626) = 0.57539."""
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
    corrections = torch.tensor([[0.75, 0.25], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    labels, predicted = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    mixed, mixed_corrections, mixed_labels = group_mixup(images, labels, predicted, corrections, 0.75, torch.Generator().manual_seed(0))
    assert mixed_labels.tolist() == [0, 0, 1, 1]
    assert mixed[:2, 0, 0, 0].tolist() == [0.25, 1.0]
    assert torch.allclose(mixed_corrections[0], torch.tensor([0.5625, 0.4375]))
    assert torch.allclose(mixed_corrections[1], corrections[1])
    partners = {(0.75 * a + 0.25 * b) for a, b in ((2, 2), (2, 3), (3, 2), (3, 3))}
    assert set(mixed[2:, 0, 0, 0].tolist()) <= partners and sorted(mixed[2:, 0, 0, 0].tolist()) in ([2.0, 3.0], [2.25, 2.75])
    loss = logit_correction_loss(torch.zeros(1, 2), torch.tensor([0]), mixed_corrections[:1], eta=1.0)
    assert float(loss) == pytest.approx(0.57539, abs=2e-5)


def test_the_mixup_ramp():
    """α_e = 0.5·exp(−5(1 − e/E)²): near 0 at the start (0.5·e⁻⁵ = 0.00337), 0.5 at the end."""
    assert mixup_strength(0, 50) == pytest.approx(0.5 * math.exp(-5))
    assert mixup_strength(25, 50) == pytest.approx(0.5 * math.exp(-1.25))
    assert mixup_strength(50, 50) == 0.5 and mixup_strength(80, 50) == 0.5


@FAST
@given(st.integers(1, 60), st.integers(0, 59))
def test_the_ramp_rises_and_stays_below_a_half(epochs, epoch):
    assert 0 < mixup_strength(epoch, epochs) <= mixup_strength(epoch + 1, epochs) <= 0.5


def test_lc_refines_the_tiny_pipelines_model_with_one_auxiliary_model(tmp_path):
    pipeline = tiny_pipeline(tmp_path, refiners=["lc"])
    model, context = original_and_context(pipeline)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    built = []
    build = context.build_model
    context = type(context)(**{**vars(context), "build_model": lambda: built.append(1) or build()})
    refined = create_refiner("lc", {"epochs": 2}).refine(model, context)
    assert len(built) == 1  # the auxiliary model; the main one starts from the original
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in refined.state_dict().items())
    assert all(bool(torch.isfinite(v).all()) for v in refined.state_dict().values() if v.is_floating_point())
    training = context.selection.curve.training
    assert len(training) == 2 and {"auxiliary_gce", "logit_correction"} <= set(training[0])
    assert training[1]["auxiliary_gce"] < training[0]["auxiliary_gce"]  # the auxiliary model learns

    new = create_refiner("lc", {"epochs": 1, "start": "new", "mixup": False}).refine(model, context)
    assert len(built) == 3  # the main model is a new one too
    assert not torch.equal(new.classifier.weight, model.classifier.weight)
