"""SoftCon as its public code computes it: the soft contrastive loss and the clipped marginals by hand,
the auxiliary model's 5-pixel receptive field, and a tiny end-to-end refinement."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners._bias_model import LocalFeatureNet, bias_features, receptive_field, train_bias_model
from crayon_plugins.plugins.refiners.softcon import marginals, sampling_weights, soft_positive_weights, softcon_loss, supcon_view
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner

SMALL = {"epochs": 1, "bias_epochs": 2, "contrastive_batch_size": 16}


def test_the_soft_contrastive_loss_by_hand():
    """Three images of one class, one view each, τ = 0.5; features f = (1, 0), (0, 1), (1, 0), so the
    logits s/τ are 2 on equal features and 0 on orthogonal ones; bias features b = (1, 0), (1, 0), (0, 1),
    so the soft weights are w_01 = 1 − 1 = 0, w_02 = w_12 = 1 − 0 = 1.

    Anchor 0: its candidates are 1 (logit 0) and 2 (logit 2); only 2 is weighted:
      L_0 = −log(e² / (e⁰ + e²)) = log(1 + e⁻²) = 0.126928.
    Anchor 1: candidates 0 and 2, both logit 0; only 2 is weighted: L_1 = −log(1/2) = log 2 = 0.693147.
    Anchor 2: candidates 0 (logit 2) and 1 (logit 0), both weighted 1:
      L_2 = −½ [log(e²/(e² + 1)) + log(1/(e² + 1))] = log(1 + e⁻²) + 1 = 1.126928.
    L_soft = (0.126928 + 0.693147 + 1.126928) / 3 = 0.649001."""
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])[:, None]
    bias = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.zeros(3, dtype=torch.long)
    assert soft_positive_weights(bias, labels).tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    expected = (2 * math.log(1 + math.exp(-2)) + math.log(2) + 1) / 3
    assert expected == pytest.approx(0.649001, abs=1e-6)
    assert float(softcon_loss(features, labels, bias, temperature=0.5)) == pytest.approx(expected, rel=1e-6)

    # With labels (0, 1, 0) only w_02 = w_20 = 1 remain; image 1 stays a candidate in both their
    # denominators: L_0 = L_2 = log(1 + e⁻²), and L_1 = 0 (no weighted positive).
    other = torch.tensor([0, 1, 0])
    by_hand = 2 * math.log(1 + math.exp(-2)) / 3
    assert float(softcon_loss(features, other, bias, temperature=0.5)) == pytest.approx(by_hand, rel=1e-6)


def test_the_two_views_of_an_image_are_no_positive_of_each_other():
    """Every view of an image has the same bias features, so ``1 − cos = 0``: with one image per class
    no anchor has a weighted positive, and the loss is 0 however the views differ."""
    features = F.normalize(torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(0)), dim=2)
    labels = torch.arange(4)
    bias = torch.rand(4, 5, generator=torch.Generator().manual_seed(1))
    assert float(softcon_loss(features, labels, bias, temperature=0.1)) == 0.0


def test_the_marginals_and_their_clipping_by_hand():
    """Class 0 holds b = (1, 0), (1, 0), (0, 1); with every item a reference, m_i = Σ_r (1 − cos(b_i, b_r)):
    m_0 = 0 + 0 + 1 = 1, m_1 = 1, m_2 = 1 + 1 + 0 = 2. Clipped at γ = 1.5 × min m = 1.5: (1, 1, 1.5);
    γ = 50 leaves them; γ = 0 draws uniformly. Class 1's lone item is its own only reference: m = 0."""
    bias = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    labels = torch.tensor([0, 0, 0, 1])
    found = marginals(bias, labels, torch.Generator().manual_seed(0))
    assert found.tolist() == pytest.approx([1.0, 1.0, 2.0, 0.0], abs=1e-12)
    assert sampling_weights(found[:3], 1.5).tolist() == [1.0, 1.0, 1.5]
    assert sampling_weights(found[:3], 50.0).tolist() == [1.0, 1.0, 2.0]
    assert sampling_weights(found[:3], 0.0).tolist() == [1.0, 1.0, 1.0]
    assert sampling_weights(found, 50.0).tolist() == [1.0, 1.0, 1.0, 1.0]  # the lone item's 0 bounds all at 0: uniform

    # With one reference per class, each item's marginal is 1 − cos to the one drawn item of its class.
    one = marginals(bias, labels, torch.Generator().manual_seed(0), references=1)
    assert set(one[:3].tolist()) <= {0.0, 1.0} and (one[:2] == one[0]).all() and one[2] == 1 - one[0]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(0, 10_000),
    st.floats(0.05, 2.0),
)
def test_the_loss_is_finite_non_negative_and_order_free(n, views, classes, seed, temperature):
    """Each log-probability is at most 0 and the weights are at least 0, so the loss is at least 0;
    anchors are averaged, so reordering the images changes nothing; cosine weights ignore the scale of
    the bias features."""
    g = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(n, views, 4, generator=g), dim=2)
    labels = torch.randint(0, classes, (n,), generator=g)
    bias = torch.rand(n, 3, generator=g)
    loss = softcon_loss(features, labels, bias, temperature)
    assert torch.isfinite(loss) and float(loss) >= -1e-6  # float32 rounding of log(e^s / (e^s + 1e-9))
    order = torch.randperm(n, generator=g)
    assert float(softcon_loss(features[order], labels[order], bias[order], temperature)) == pytest.approx(float(loss), rel=1e-5, abs=1e-6)
    assert float(softcon_loss(features, labels, 7.0 * bias, temperature)) == pytest.approx(float(loss), rel=1e-5, abs=1e-6)


def test_a_supcon_view_keeps_the_image_shape_and_range_and_follows_its_generator():
    image = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))
    first = supcon_view(image, torch.Generator().manual_seed(3))
    assert first.shape == image.shape and 0 <= float(first.min()) and float(first.max()) <= 1
    assert torch.equal(first, supcon_view(image, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, supcon_view(image, torch.Generator().manual_seed(4)))


def test_the_auxiliary_model_sees_five_by_five_pixel_patches():
    """The gradient of one cell of the last map reaches exactly a 5 × 5 patch of the input (eval mode:
    batch norm then mixes nothing across the image), as :func:`receptive_field` computes."""
    model = LocalFeatureNet(2).eval()
    assert receptive_field(model) == 5
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    cells = model.feature_map(images)
    assert cells.shape[-2:] == (4, 4)  # 32 → 30 (3×3) → 14 (3×3, stride 2) → 7 → 4 → 4
    cells[0, :, 2, 1].sum().backward()
    reached = (images.grad[0].abs().sum(dim=0) > 0).nonzero()
    assert (reached.max(dim=0).values - reached.min(dim=0).values + 1).tolist() == [5, 5]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return original_and_context(tiny_pipeline(tmp_path_factory.mktemp("cache"), refiners=["softcon"]))


def test_the_auxiliary_model_singles_out_the_images_against_the_shortcut(trained):
    """On the tiny spurious-bars split (a corner square whose colour agrees with the label on 95 % of
    the images), images whose square disagrees are unlike their class-mates to the auxiliary model: their
    marginals, and so how often the contrastive minibatches draw them, are higher."""
    _, context = trained
    model = train_bias_model(context, create_refiner("softcon", SMALL).params, "auxiliary")
    features = bias_features(model, context.train.images, context.device)
    found = marginals(features, context.train.labels, torch.Generator().manual_seed(0))
    against = context.train.spurious != context.train.labels
    assert 0 < int(against.sum()) < len(against)
    assert float(found[against].mean()) > 1.5 * float(found[~against].mean())


def test_softcon_refines_a_copy_of_the_original_into_another_finite_model(trained):
    model, context = trained
    before = copy.deepcopy(model.state_dict())
    refined = create_refiner("softcon", SMALL).refine(model, context)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
    assert all(bool(torch.isfinite(v).all()) for v in refined.state_dict().values() if v.is_floating_point())
    with torch.no_grad():
        assert refined.eval()(context.train.images[:4]).shape == (4, 2)
