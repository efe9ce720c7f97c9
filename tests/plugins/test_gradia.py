"""GRADIA as its public code computes it: quadrant weights, human maps, its Grad-CAM and its loss;
and the reasonability matrix."""

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.gradia import human_maps, quadrant_weights
from crayon_plugins.plugins.refiners.map_guided import Drawings
from test_metrics import split

from crayon_plugins import create_metric, create_refiner
from crayon_plugins.annotation.records import NOT_ANNOTATED, Answer
from crayon_plugins.api.components import Predictions
from crayon_plugins.api.finetuning import Batch
from crayon_plugins.model.gradcam import GradiaGradCam
from crayon_plugins.testing import check_interpreter
from crayon_plugins.testing.tiny import tiny_image_set, tiny_model

PUBLISHED = {"reasonable-accurate": (1.0, 0.0), "unreasonable-accurate": (0.4, 1.6), "reasonable-inaccurate": (0.8, 0.2), "unreasonable-inaccurate": (1.0, 1.0)}


def test_quadrant_weights_are_gradias_table():
    answers = torch.tensor([Answer.YES, Answer.NO, Answer.YES, Answer.NO, Answer.MAYBE, NOT_ANNOTATED, Answer.MAYBE])
    accurate = torch.tensor([True, True, False, False, True, False, False])
    w_pred, w_att = quadrant_weights(answers, accurate, PUBLISHED)
    assert w_pred.tolist() == pytest.approx([1.0, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0])
    assert w_att.tolist() == pytest.approx([0.0, 1.6, 0.2, 1.0, 0.0, 0.0, 0.0])


def test_the_refiners_defaults_are_the_published_values():
    params = create_refiner("gradia").params
    assert params.lam == 1.0
    assert {name: getattr(params, name.replace("-", "_")) for name in PUBLISHED} == PUBLISHED


def test_gradias_gradcam_has_no_relu_and_is_min_max_normalised():
    """Min–max over a map with negative cells: the lowest cell is 0 and the highest 1, where ReLU
    then max-normalisation would zero every negative cell alike."""
    model, images = tiny_model(0), tiny_image_set(n=6).images.all()
    maps, logits = GradiaGradCam().explain(model, images, torch.zeros(6, dtype=torch.long))
    assert logits.shape == (6, 2)
    flat = maps.detach().flatten(1)
    assert torch.allclose(flat.amin(dim=1), torch.zeros(6)) and torch.allclose(flat.amax(dim=1), torch.ones(6))
    check_interpreter(GradiaGradCam())


def test_gradias_gradcam_trains_through_the_activations_only():
    """Its channel weights are constants: the map's gradient equals that of Σ_c w_c·A_c with w_c
    detached (then min–max normalised)."""
    model, images = tiny_model(0), tiny_image_set(n=2).images.all()
    targets = torch.tensor([0, 1])
    maps, _ = GradiaGradCam().explain(model, images, targets)
    features = model.features(images)
    score = model.head(features).gather(1, targets[:, None]).sum()
    (grads,) = torch.autograd.grad(score, features, retain_graph=True)
    cam = (grads.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1)
    low, high = cam.amin(dim=(-2, -1), keepdim=True), cam.amax(dim=(-2, -1), keepdim=True)
    expected = (cam - low) / (high - low)
    weight = model.body[0].weight
    (ours,) = torch.autograd.grad(maps.sum(), weight)
    (reference,) = torch.autograd.grad(expected.sum(), weight)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_human_maps_are_area_resized_blurred_and_max_normalised():
    regions = torch.zeros(1, 8, 8, dtype=torch.bool)
    regions[0, :4, :4] = True  # the top-left quarter: one cell of a 2×2 grid, four of a 4×4
    small = human_maps(regions, (2, 2))
    assert float(small.max()) == 1.0 and float(small[0, 0, 0]) == 1.0 and float(small[0, 1, 1]) < 1.0
    big = human_maps(regions, (4, 4))
    assert float(big[0, 0, 0]) == 1.0 and float(big[0, 3, 3]) == 0.0
    assert 0 < float(big[0, 2, 1]) < float(big[0, 1, 1])  # the blur spreads mass one cell out


def test_gradias_loss_by_hand():
    """mean over the batch of w_pred·CE + λ · mean over images with w_att > 0 of w_att·L1."""
    model, train = tiny_model(0), tiny_image_set(n=4)
    gradia = create_refiner("gradia")
    batch = Batch(torch.arange(4), train.images.all(), train.labels)
    w_pred, w_att = torch.tensor([1.0, 0.4, 0.8, 1.0]), torch.tensor([0.0, 1.6, 0.2, 0.0])
    prepared = Drawings(w_pred, w_att, train.masks.all(), torch.Generator())
    loss = gradia.loss(model, batch, prepared)
    maps, logits = GradiaGradCam().explain(model, train.images.all(), train.labels)
    l1 = (maps - human_maps(train.masks.all(), tuple(maps.shape[-2:]))).abs().mean(dim=(-2, -1))
    ce = F.cross_entropy(logits, train.labels, reduction="none")
    expected = (w_pred * ce).mean() + (1.6 * l1[1] + 0.2 * l1[2]) / 2
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_reasonability_matrix_against_hand_counted_quadrants():
    test = split([0, 0, 0, 1, 1, 1, 1, 0], [0] * 8)
    predicted = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])  # accurate: T F T T F T T T
    answers = torch.tensor([Answer.YES, Answer.YES, Answer.NO, Answer.NO, Answer.NO, Answer.MAYBE, NOT_ANNOTATED, Answer.NO])
    found = create_metric("reasonability").compute(Predictions(test, predicted, torch.ones(4) / 4, answers))
    assert found["reasonability_counts"] == {
        "reasonable-accurate": 1, "reasonable-inaccurate": 1, "unreasonable-accurate": 3,
        "unreasonable-inaccurate": 1, "undecided": 2,
    }
    assert found["reasonability"]["unreasonable-accurate"] == 3 / 8
    assert sum(found["reasonability"].values()) == pytest.approx(1.0)


def test_an_answered_image_without_a_drawing_keeps_one_and_zero():
    """GRADIA.py gives (1, 0) to every image without a human map, whatever its quadrant."""
    from dataclasses import replace

    from crayon_plugins.testing.tiny import tiny_context

    model, train = tiny_model(0), tiny_image_set(n=8)
    context = tiny_context(model, train, map_answers=torch.full((8,), int(Answer.NO)))
    undrawn = torch.tensor([True, False] * 4)
    w_pred, w_att = create_refiner("gradia").weights(model, replace(context, drawings=replace(context.drawings, drawn=~undrawn)))
    assert w_pred[undrawn].tolist() == [1.0] * 4
    drawn = list(zip(w_pred[~undrawn].tolist(), w_att[~undrawn].tolist()))  # a "no": (0.4, 1.6) if accurate, else (1, 1)
    assert all(pair == pytest.approx((0.4, 1.6)) or pair == pytest.approx((1.0, 1.0)) for pair in drawn)
