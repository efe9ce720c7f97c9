"""FLAC as its public code computes it: the loss by hand, its properties, training lowering it, and a
tiny end-to-end refinement."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.flac import flac_loss, pairwise_distances
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner


def jeffreys(p: float, q: float) -> float:
    return (p - q) * (math.log(p) - math.log(q))


def test_the_flac_loss_by_hand():
    """Four items with one-dimensional features, power d = 1 (kernels 1 / (1 + |x_i − x_j|)); labels
    0, 0, 0, 1; bias features 0, 1, 3, 2; model features 0, 1, 2, 5.

    Bias similarities S^b: 01 → 1/2, 02 → 1/4, 12 → 1/3, 03 → 1/3, 13 → 1/2, 23 → 1/2, and 1/1.001 on
    the diagonal (the distance's √1e-6 = 0.001), so t = (0.999 + 0.25) / 2 = 0.6245. Selected: every
    pair of class 0 (all below t, the diagonal above it); no pair with item 3 (none above t).
    P rows from 1 − S^b (01 → 1/2, 02 → 3/4, 12 → 2/3):
      row 0: (1/2, 3/4) / 5/4 = (0.4, 0.6);  row 1: (1/2, 2/3) / 7/6 = (3/7, 4/7);
      row 2: (3/4, 2/3) / 17/12 = (9/17, 8/17).
    Q rows from S^f (01 → 1/2, 02 → 1/3, 12 → 1/2):
      row 0: (1/2, 1/3) / 5/6 = (0.6, 0.4);  row 1: (1/2, 1/2) → (0.5, 0.5);  row 2: (1/3, 1/2) → (0.4, 0.6).
    Jeffreys terms (p − q)(ln p − ln q): 0.081093, 0.081093, 0.011011, 0.009538, 0.036274, 0.031440;
    their mean, L_FLAC = 0.0417415."""
    bias = torch.tensor([[0.0], [1.0], [3.0], [2.0]])
    features = torch.tensor([[0.0], [1.0], [2.0], [5.0]])
    labels = torch.tensor([0, 0, 0, 1])
    pairs = [(0.4, 0.6), (0.6, 0.4), (3 / 7, 0.5), (4 / 7, 0.5), (9 / 17, 0.4), (8 / 17, 0.6)]
    terms = [jeffreys(p, q) for p, q in pairs]
    assert terms == pytest.approx([0.081093, 0.081093, 0.011011, 0.009538, 0.036274, 0.031440], abs=1e-6)
    expected = sum(terms) / len(terms)
    assert expected == pytest.approx(0.0417415, abs=1e-7)
    assert float(flac_loss(bias, features, labels, power=1.0)) == pytest.approx(expected, rel=1e-4)  # the 1e-6 and 1e-7 guards


def test_the_distances_and_a_row_with_one_selected_pair():
    """``sqrt(‖x_i − x_j‖² + 1e-6)``. Two items of one class at bias distance 4: with the default power
    0.5, S^b_01 = 1 / (1 + 2) = 1/3, below t = (0.9693 + 1/3) / 2 (the diagonal's 1 / (1 + 0.001^0.5)); the pair is selected and is all of
    each row, so P = Q = 1 there and the loss is 0 whatever the model's features."""
    x = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    assert pairwise_distances(x).flatten().tolist() == pytest.approx([1e-3, 4.0, 4.0, 1e-3], rel=1e-6)
    assert float(flac_loss(x, torch.randn(2, 3), torch.tensor([0, 0]))) == pytest.approx(0.0, abs=1e-6)


def test_nothing_is_selected_when_the_bias_features_are_all_alike():
    """Equal bias features make every S^b equal to t: no pair is below or above it, and the loss is 0."""
    loss = flac_loss(torch.ones(5, 3), torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]))
    assert float(loss) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(1, 3), st.integers(0, 10_000), st.sampled_from([0.5, 1.0, 2.0]))
def test_the_loss_is_finite_non_negative_and_order_free(n, classes, seed, power):
    """Each Jeffreys term (p − q)(log p − log q) is at least 0; pairs are averaged, so reordering the
    items changes nothing."""
    g = torch.Generator().manual_seed(seed)
    bias = F.normalize(torch.randn(n, 3, generator=g), dim=1)
    features = F.normalize(torch.randn(n, 5, generator=g), dim=1)
    labels = torch.randint(0, classes, (n,), generator=g)
    loss = flac_loss(bias, features, labels, power)
    assert torch.isfinite(loss) and float(loss) >= 0
    order = torch.randperm(n, generator=g)
    assert float(flac_loss(bias[order], features[order], labels[order], power)) == pytest.approx(float(loss), rel=1e-4, abs=1e-7)


def test_training_the_features_on_the_loss_lowers_it():
    """Fifty Adam steps on free features halve the loss: the features become similar where the bias
    features are dissimilar, on the selected pairs."""
    g = torch.Generator().manual_seed(0)
    bias = F.normalize(torch.randn(16, 4, generator=g), dim=1)
    labels = torch.arange(16) % 2
    raw = torch.randn(16, 8, generator=g).requires_grad_(True)
    optimiser = torch.optim.Adam([raw], lr=0.05)
    before = float(flac_loss(bias, F.normalize(raw, dim=1), labels).detach())
    for _ in range(50):
        loss = flac_loss(bias, F.normalize(raw, dim=1), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(flac_loss(bias, F.normalize(raw, dim=1), labels).detach()) < 0.5 * before


def test_flac_refines_a_copy_of_the_original_into_another_finite_model(tmp_path):
    model, context = original_and_context(tiny_pipeline(tmp_path, refiners=["flac"]))
    before = copy.deepcopy(model.state_dict())
    refined = create_refiner("flac", {"epochs": 1, "bias_epochs": 2}).refine(model, context)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
    assert all(bool(torch.isfinite(v).all()) for v in refined.state_dict().values() if v.is_floating_point())
    with torch.no_grad():
        assert refined.eval()(context.train.images[:4]).shape == (4, 2)
