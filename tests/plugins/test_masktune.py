"""MaskTune: XGrad-CAM, grad-cam's scaling and the mean + 2·std threshold worked by hand, the share of
pixels it can mask, and one refinement of the tiny pipeline's original model on its masked images."""

import math

import pytest
import torch
from crayon_plugins.plugins.refiners.masktune import heat_maps, keep_masks, masked, xgradcam
from hypothesis import given, settings
from test_pipeline import original_and_context, tiny_pipeline
from torch import nn

from crayon_plugins import create_refiner
from crayon_plugins.api import Classifier
from crayon_plugins.testing.strategies import map_shapes, saliency_maps


class TwoChannels(Classifier):
    """The first two image channels are the feature map (no normalisation), global average pooling,
    a linear head without bias."""

    def __init__(self, weight):
        super().__init__(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channels=2)
        self.classifier = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor(weight))

    def forward_features(self, normalised):
        return normalised[:, :2]

    def pool(self, features):
        return features.mean(dim=(2, 3))


def test_xgradcam_by_hand():
    """A_0 = [[1, 0], [0, 1]], A_1 = [[0, 2], [2, 0]], classifier rows (1, −1) and (−1, 1), mean pooling.

    Pooled (0.5, 1): logits (−0.5, 0.5), so the predicted class is 1 and ∂z_1/∂A_c = W_1c / 4 = (−0.25, 0.25).
    w_0 = Σ(−0.25·A_0) / (ΣA_0 + 1e-7) = −0.5 / 2 = −0.25; w_1 = Σ(0.25·A_1) / ΣA_1 = 1 / 4 = 0.25.
    S = ReLU(−0.25·A_0 + 0.25·A_1) = ReLU([[−0.25, 0.5], [0.5, −0.25]]) = [[0, 0.5], [0.5, 0]].
    For class 0 the weights flip: S = ReLU([[0.25, −0.5], [−0.5, 0.25]]) = [[0.25, 0], [0, 0.25]]."""
    model = TwoChannels([[1.0, -1.0], [-1.0, 1.0]]).eval()
    images = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [2.0, 0.0]], [[9.0, 9.0], [9.0, 9.0]]])[None]
    maps, targets = xgradcam(model, images)
    assert targets.tolist() == [1]
    assert torch.allclose(maps, torch.tensor([[[0.0, 0.5], [0.5, 0.0]]]), atol=1e-6)
    maps, _ = xgradcam(model, images, torch.tensor([0]))
    assert torch.allclose(maps, torch.tensor([[[0.25, 0.0], [0.0, 0.25]]]), atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # the model is explained, not trained


def test_heat_maps_by_hand():
    """[[0, 1], [0, 0]] bilinearly resized to 4×4 with half-pixel centres: rows take the top row with
    weights (1, 0.75, 0.25, 0), columns the right column with (0, 0.25, 0.75, 1); its outer product
    already spans [0, 1], so grad-cam's second min–max scaling keeps it (up to the 1e-7)."""
    heat = heat_maps(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]), (4, 4))
    expected = torch.outer(torch.tensor([1.0, 0.75, 0.25, 0.0]), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert torch.allclose(heat[0], expected, atol=1e-6)


def test_the_threshold_by_hand():
    """A 4×4 heat map: seven zeros, eight 0.1 and one 1.0. Its nine positive pixels have mean
    μ = 1.8 / 9 = 0.2 and E[S²] = 1.08 / 9 = 0.12, so σ = √(0.12 − 0.04) = 0.2828 and
    μ + 2σ = 0.7657: only the 1.0 is masked (the zeros do not count: a zero-heavy map is not
    diluted). The same values at 3×3 without the zeros: grad-cam's min–max scaling first sends the
    eight 0.1 to 0, leaving one positive pixel with σ = 0, and 1 > 1 + 0 is false: nothing masked."""
    values = torch.tensor([0.0] * 7 + [0.1] * 8 + [1.0]).reshape(1, 4, 4)
    keep = keep_masks(heat_maps(values, (4, 4)))
    assert (~keep).sum() == 1 and not bool(keep[0, 3, 3])
    mean, std = 0.2, math.sqrt(0.12 - 0.04)
    assert mean + 2 * std == pytest.approx(0.76569, abs=1e-5)
    assert bool(keep_masks(heat_maps(torch.tensor([0.1] * 8 + [1.0]).reshape(1, 3, 3), (3, 3))).all())
    assert bool(keep_masks(torch.zeros(2, 5, 5)).all())  # no positive pixel: nothing masked

    images = torch.ones(1, 3, 4, 4)
    assert masked(images, values).sum() == 3 * 15 and masked(images, values)[0, :, 3, 3].tolist() == [0.0, 0.0, 0.0]


@settings(max_examples=80, deadline=None)
@given(map_shapes(max_side=8).flatmap(saliency_maps))
def test_at_most_a_fifth_of_the_positive_pixels_are_masked(maps):
    """Cantelli's inequality: P(S − μ > 2σ) ≤ σ² / (σ² + 4σ²) = 1/5 for the positive pixels' own
    distribution; masked pixels are positive ones, and no map is entirely masked."""
    heat = heat_maps(maps, (12, 12))
    dropped = ~keep_masks(heat)
    positive = heat > 0
    assert not bool((dropped & ~positive).any())
    assert bool((dropped.sum(dim=(1, 2)) <= positive.sum(dim=(1, 2)) / 5 + 1e-6).all())
    assert bool(torch.isfinite(heat).all())


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return original_and_context(tiny_pipeline(tmp_path_factory.mktemp("cache"), refiners=["masktune"]))


def test_masktune_fine_tunes_the_original_on_its_masked_images(original):
    model, context = original
    refiner = create_refiner("masktune")
    maps = refiner.prepare(model, context)
    assert maps.shape[0] == len(context.train)
    dropped = ~keep_masks(heat_maps(maps, context.train.image_size))
    shares = dropped.flatten(1).float().mean(dim=1)
    assert bool((shares > 0).float().mean() > 0.5) and bool((shares <= 0.2).all())  # most images lose a little, none more than a fifth

    refined = refiner.refine(model, context)
    assert refined is not model
    assert all(torch.isfinite(v).all() for v in refined.state_dict().values() if v.is_floating_point())
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
    epochs = context.selection.curve.training
    assert len(epochs) == 1 and epochs[0]["cross_entropy"] > 0  # one epoch, the mean cross-entropy logged

    assert create_refiner("masktune", {"saliency": "run"}).prepare(model, context) is context.original_maps
