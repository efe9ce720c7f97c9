"""GRADIA as its public code computes it: quadrant weights, human maps, its Grad-CAM and its loss;
and the reasonability matrix."""

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.gradia import human_maps, opencv_blur, quadrant_weights
from crayon_plugins.plugins.refiners.map_guided import Drawings
from hypothesis import given, settings
from hypothesis import strategies as st
from test_metrics import split
from test_pipeline import TINY, original_and_context, tiny_pipeline
from torch import nn

from crayon_plugins import create_metric, create_refiner
from crayon_plugins.annotation.records import NOT_ANNOTATED, Answer
from crayon_plugins.api.components import Predictions
from crayon_plugins.api.finetuning import Batch
from crayon_plugins.model.classifier import Classifier
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


def test_opencv_blur_by_hand():
    """``cv2.GaussianBlur(m, (3, 3), 0)`` (checked against OpenCV 5.1): the kernel ``[¼, ½, ¼]`` per
    axis, borders mirrored without repeating the edge (BORDER_REFLECT_101).

    A 1 in a corner of a 3×3 map: per axis ``[1, 0, 0]`` pads to ``[0 | 1, 0, 0 | 0]``, giving
    ``[½, ¼, 0]``; the map is the outer product. A 1 at (1, 1) of a 4×4 map: ``[0, 1, 0, 0]`` pads to
    ``[1 | 0, 1, 0, 0 | 0]``, giving ``[½, ½, ¼, 0]`` (zero padding would give ``[¼, ½, ¼, 0]``). A
    two-cell axis ``[a, b]`` pads to ``[b | a, b | a]``: both cells become ``(a + b)/2``; a one-cell
    axis is left alone."""
    corner = torch.zeros(1, 3, 3)
    corner[0, 0, 0] = 1.0
    assert opencv_blur(corner)[0].tolist() == [[0.25, 0.125, 0.0], [0.125, 0.0625, 0.0], [0.0, 0.0, 0.0]]
    inner = torch.zeros(1, 4, 4)
    inner[0, 1, 1] = 1.0
    axis = torch.tensor([0.5, 0.5, 0.25, 0.0])
    assert torch.equal(opencv_blur(inner)[0], torch.outer(axis, axis))
    assert opencv_blur(torch.tensor([[[1.0, 0.0]]])).tolist() == [[[0.5, 0.5]]]
    assert opencv_blur(torch.tensor([[[1.0], [0.0], [0.0]]])).tolist() == [[[0.5], [0.25], [0.0]]]
    assert opencv_blur(torch.tensor([[[0.3]]])).tolist() == [[[pytest.approx(0.3)]]]


@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_opencv_blur_keeps_the_total_away_from_borders_and_constants(h, w, seed):
    """The kernel sums to 1: a constant map stays constant, and a map that is zero on its two outer
    rows and columns (so nothing reaches the border to be mirrored) keeps its total."""
    assert torch.allclose(opencv_blur(torch.full((1, h, w), 0.7)), torch.full((1, h, w), 0.7))
    inner = torch.rand(1, h, w, generator=torch.Generator().manual_seed(seed))
    inner[:, :2], inner[:, -2:], inner[:, :, :2], inner[:, :, -2:] = 0, 0, 0, 0
    assert float(opencv_blur(inner).sum()) == pytest.approx(float(inner.sum()), rel=1e-5, abs=1e-6)


def test_human_maps_are_area_resized_blurred_and_max_normalised():
    """A 6×6 drawing of its top-left 2×2 cells on a 3×3 grid: area resizing gives a 1 in the corner,
    the blur ``[[¼, ⅛, 0], [⅛, 1/16, 0], [0, 0, 0]]``, max-normalisation ``[[1, ½, 0], [½, ¼, 0], 0]``.
    The σ = 0.8 Gaussian (``[0.228, 0.543, 0.228]``) would give 0.228/0.543 = 0.42 beside the corner."""
    regions = torch.zeros(1, 6, 6, dtype=torch.bool)
    regions[0, :2, :2] = True
    found = human_maps(regions, (3, 3))[0]
    assert torch.allclose(found, torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.25, 0.0], [0.0, 0.0, 0.0]]), atol=1e-6)
    regions = torch.zeros(1, 8, 8, dtype=torch.bool)
    regions[0, :4, :4] = True  # one cell of a 2×2 grid: the two-cell blur averages both axes
    assert torch.allclose(human_maps(regions, (2, 2)), torch.ones(1, 2, 2), atol=1e-6)
    big = human_maps(regions, (4, 4))
    assert float(big[0, 0, 0]) == pytest.approx(1.0) and float(big[0, 3, 3]) == 0.0
    assert 0 < float(big[0, 2, 1]) < float(big[0, 1, 1])  # the blur spreads mass one cell out


def test_gradias_loss_by_hand():
    """mean over the batch of w_pred·CE + λ · mean over images with w_att > 0 of w_att·L1."""
    model, train = tiny_model(0), tiny_image_set(n=4)
    gradia = create_refiner("gradia", {"gradcam": "batched"})
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


class BatchNormClassifier(Classifier):
    """:class:`~crayon_plugins.testing.tiny.TinyClassifier` with batch norm after each convolution,
    so in train mode an image's outputs depend on its batch-mates."""

    def __init__(self) -> None:
        super().__init__(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channels=8)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.classifier = nn.Linear(8, 2)

    def forward_features(self, normalised):
        return self.body(normalised)

    def pool(self, features):
        return features.mean(dim=(2, 3))


def batch_norm_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return BatchNormClassifier().train()


def test_per_image_maps_are_each_images_own_and_differ_from_the_batched_ones():
    """GRADIA.py explains one image at a time in train mode: with batch norm, the per-image map of
    image i is the map of the batch ``[x_i]`` alone, and not the map of x_i inside the batch."""
    model, train = batch_norm_model(), tiny_image_set(n=4)
    images, targets = train.images.all(), train.labels
    per_image = create_refiner("gradia").attention_maps(model, images, targets)
    assert create_refiner("gradia").params.gradcam == "per-image"  # the default
    for i in range(4):
        alone, _ = GradiaGradCam().explain(model, images[i : i + 1], targets[i : i + 1])
        assert torch.allclose(per_image[i], alone[0], atol=1e-6)
    batched = create_refiner("gradia", {"gradcam": "batched"}).attention_maps(model, images, targets)
    assert per_image.shape == batched.shape == (4, 8, 8)
    assert float((per_image - batched).detach().abs().amax()) > 0.05


def test_per_image_loss_by_hand_explains_only_the_aligned_images_after_the_batch_pass():
    """Per image (GRADIA.py's ``model_train_with_map``): the cross-entropy from one forward pass of
    the minibatch, then each image with w_att > 0, and only those, explained alone: the body sees
    a batch of 4, then two batches of 1. Loss = mean_i w_pred·CE + (1.6·L1_1 + 0.2·L1_2)/2 with
    L1_i the map of x_i alone against its human map."""
    model, train = batch_norm_model(), tiny_image_set(n=4)
    images, labels, regions = train.images.all(), train.labels, train.masks.all()
    w_pred, w_att = torch.tensor([1.0, 0.4, 0.8, 1.0]), torch.tensor([0.0, 1.6, 0.2, 0.0])
    seen = []
    hook = model.body.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    loss = create_refiner("gradia").loss(model, Batch(torch.arange(4), images, labels), Drawings(w_pred, w_att, regions, torch.Generator()))
    hook.remove()
    assert seen == [4, 1, 1]
    ce = F.cross_entropy(model(images), labels, reduction="none")
    l1 = [
        (GradiaGradCam().explain(model, images[i : i + 1], labels[i : i + 1])[0] - human_maps(regions[i : i + 1], (8, 8))).abs().mean()
        for i in (1, 2)
    ]
    expected = (w_pred * ce).mean() + (1.6 * l1[0] + 0.2 * l1[1]) / 2
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    unaligned = create_refiner("gradia").loss(model, Batch(torch.arange(4), images, labels), Drawings(w_pred, torch.zeros(4), regions, torch.Generator()))
    assert float(unaligned.detach()) == pytest.approx(float((w_pred * ce).mean().detach()), rel=1e-5)


@given(st.lists(st.sampled_from([0.0, 0.2, 1.0, 1.6]), min_size=6, max_size=6), st.integers(0, 3))
@settings(max_examples=15, deadline=None)
def test_per_image_and_batched_agree_without_batch_norm(w_att, seed):
    """Without batch norm an image's outputs do not depend on its batch-mates: both forms give the
    same loss and the same gradient."""
    model, train = tiny_model(seed), tiny_image_set(n=6, seed=seed)
    batch = Batch(torch.arange(6), train.images.all(), train.labels)
    prepared = Drawings(torch.ones(6), torch.tensor(w_att), train.masks.all(), torch.Generator())
    found = []
    for form in ("per-image", "batched"):
        loss = create_refiner("gradia", {"gradcam": form}).loss(model, batch, prepared)
        (grad,) = torch.autograd.grad(loss, model.body[0].weight)
        found.append((loss.detach(), grad))
    assert torch.allclose(found[0][0], found[1][0], rtol=1e-5)
    assert torch.allclose(found[0][1], found[1][1], rtol=1e-4, atol=1e-6)


def test_a_short_per_image_refinement(tmp_path):
    """One epoch of the default (per-image) form on a smaller tiny pipeline (resnet10t, which has
    batch norm) changes the model and keeps it finite."""
    dataset = {**TINY["dataset"], "n_train": 32, "n_val": 16, "n_test": 16}
    model, context = original_and_context(tiny_pipeline(tmp_path / "cache", dataset=dataset, refiners=["gradia"]))
    gradia = create_refiner("gradia", {"epochs": 1, "batch_size": 16})
    assert gradia.params.gradcam == "per-image"
    assert bool(gradia.prepare(model, context).w_guide.gt(0).any())  # some images are aligned
    refined = gradia.refine(model, context)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    after = torch.cat([p.detach().flatten() for p in refined.parameters()])
    assert torch.isfinite(after).all() and not torch.equal(after, before)
