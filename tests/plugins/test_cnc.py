"""Correct-N-Contrast (``cnc``): the ERM slices, the contrastive groups and the supervised contrastive
loss as the public code computes them, worked by hand; and one refinement of the tiny pipeline."""

import math

import pytest
import torch
from crayon_plugins.plugins.refiners.cnc import Slices, contrastive_loss, draw
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner

FAST = settings(max_examples=60, deadline=None)


def test_the_contrastive_loss_by_hand():
    """Anchor u = (1, 0); positives (2, 0) and (0, 3) (cosines 1 and 0); negative (−1, 0) (cosine −1);
    T = 0.5. The code's loss, mean over positives of −log(e^{s_p/T} / (Σ_n e^{s_n/T} + Σ_p' e^{s_p'/T})):
    log(e² + e⁰ + e⁻²) = log 8.52439 = 2.14293, minus the mean of 2 and 0: 1.14293."""
    anchor = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    negatives = torch.tensor([[[-1.0, 0.0]]])
    loss = contrastive_loss(anchor, positives, negatives, temperature=0.5)
    assert float(loss) == pytest.approx(1.14293, abs=1e-5)
    # the code's own arithmetic: -mean(log exp_pos - log(sum_exp_neg + sum_exp_pos))
    exp_pos, exp_neg = torch.exp(torch.tensor([1.0, 0.0]) / 0.5), torch.exp(torch.tensor([-1.0]) / 0.5)
    assert float(loss) == pytest.approx(float(-(torch.log(exp_pos) - torch.log(exp_neg.sum() + exp_pos.sum())).mean()), abs=1e-6)


@FAST
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.floats(0.05, 1.0), st.floats(0.1, 10.0), st.integers(0, 2**16))
def test_the_contrastive_loss_is_at_least_log_p_and_ignores_feature_scale(groups, n_pos, n_neg, temperature, scale, seed):
    """Cosine similarity ignores each feature's length; log-sum-exp over N ∪ P ≥ mean_P + log |P|."""
    g = torch.Generator().manual_seed(seed)
    anchor, positives, negatives = torch.randn(groups, 3, generator=g), torch.randn(groups, n_pos, 3, generator=g), torch.randn(groups, n_neg, 3, generator=g)
    loss = contrastive_loss(anchor, positives, negatives, temperature)
    assert bool((loss >= math.log(n_pos) - 1e-5).all())
    assert torch.allclose(contrastive_loss(scale * anchor, positives / scale, negatives * scale, temperature), loss, atol=1e-4)


def test_pulling_positives_closer_lowers_the_loss():
    anchor, negatives = torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]])
    far, near = torch.tensor([[[0.0, -1.0]]]), torch.tensor([[[1.0, 0.1]]])
    assert float(contrastive_loss(anchor, near, negatives, 0.1)) < float(contrastive_loss(anchor, far, negatives, 0.1))


def test_the_slices_by_hand():
    """Labels (0, 0, 0, 1, 1, 1), ERM predictions (0, 0, 1, 1, 1, 0).

    Slice 0 (predicted 0): anchors {0, 1} (right), negatives {5} (class 1, predicted 0).
    Slice 1: anchors {3, 4}, negatives {2}. Positives of class 0: {2} (predicted 1); of class 1: {5}.
    With k = 4: k_p = min(4, 1, 1) = 1, k_n = min(4, 1, 1) = 1, k_a = min(4, 1, 1) = 1."""
    slices = Slices.of(torch.tensor([0, 0, 1, 1, 1, 0]), torch.tensor([0, 0, 0, 1, 1, 1]))
    assert slices.classes == (0, 1)
    assert [a.tolist() for a in slices.anchors] == [[0, 1], [3, 4]]
    assert [n.tolist() for n in slices.negatives] == [[5], [2]]
    assert {c: p.tolist() for c, p in slices.positives.items()} == {0: [2], 1: [5]}
    assert slices.sizes(4) == (1, 1, 1)


def test_the_code_s_fallbacks_when_nothing_is_predicted_wrong():
    """Labels (0, 0, 1), predictions (0, 0, 1): slice 0 has no wrong item, so its negatives are every
    item not of its most frequent class (0): {2}; class 0 has no wrong item, so its positives are all
    of it: {0, 1}."""
    slices = Slices.of(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    assert [n.tolist() for n in slices.negatives] == [[2], [0, 1]]
    assert slices.positives[0].tolist() == [0, 1] and slices.positives[1].tolist() == [2]


def test_an_epoch_interleaves_the_slices_and_cuts_them_to_the_smallest():
    """Slice 0 has 6 anchors, slice 1 has 2: an epoch holds 2 of each, alternating; with share 0.5,
    round(3) and round(1) = 1 of each."""
    predicted = torch.tensor([0] * 6 + [1] * 2 + [0])
    labels = torch.tensor([0] * 6 + [1] * 2 + [1])
    slices = Slices.of(predicted, labels)
    epoch = slices.epoch(1.0, torch.Generator().manual_seed(0))
    assert epoch[:, 0].tolist() == [0, 1, 0, 1]
    assert set(epoch[0::2, 1].tolist()) <= set(range(6)) and sorted(epoch[1::2, 1].tolist()) == [6, 7]
    assert len(epoch[0::2, 1].unique()) == 2  # without replacement
    assert slices.epoch(0.5, torch.Generator().manual_seed(0))[:, 0].tolist() == [0, 1]


@FAST
@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**16))
def test_draw_repeats_only_when_the_pool_is_too_small(pool_size, k, seed):
    pool = torch.arange(10, 10 + pool_size)
    drawn = draw(pool, k, torch.Generator().manual_seed(seed))
    assert len(drawn) == k and set(drawn.tolist()) <= set(pool.tolist())
    if k <= pool_size:
        assert len(drawn.unique()) == k


def test_cnc_refines_the_tiny_pipelines_model(tmp_path):
    pipeline = tiny_pipeline(tmp_path, refiners=["cnc"])
    model, context = original_and_context(pipeline)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refined = create_refiner("cnc", {"epochs": 2, "anchor_share": 1.0}).refine(model, context)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in refined.state_dict().items())
    assert all(bool(torch.isfinite(v).all()) for v in refined.state_dict().values() if v.is_floating_point())
    # trained in evaluation mode, as the code trains its encoder: batch-norm statistics are kept
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(before[k], refined.state_dict()[k]) for k in statistics)
    training = context.selection.curve.training
    assert len(training) == 2 and {"contrastive", "cross_entropy"} <= set(training[0])
    assert all(math.isfinite(epoch["contrastive"]) and epoch["contrastive"] > 0 for epoch in training)

    built = []
    build = context.build_model
    fresh = type(context)(**{**vars(context), "build_model": lambda: built.append(1) or build()})
    new = create_refiner("cnc", {"epochs": 1, "start": "new"}).refine(model, fresh)
    assert built == [1] and not torch.equal(new.classifier.weight, model.classifier.weight)
