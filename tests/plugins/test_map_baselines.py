"""The map-guided baselines, JtT and DFR: each as its public code computes it, each term vanishing
where its paper says, and training lowering it."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.dfr import balanced, balanced_half
from crayon_plugins.plugins.refiners.jtt import upsampled_weights
from crayon_plugins.plugins.refiners.map_baselines import box_energy, shuffle_outside
from test_pipeline import original_and_context, tiny_pipeline

from crayon_plugins import create_refiner
from crayon_plugins.api.finetuning import Batch

GUIDED = ["rrr", "gradmask", "actdiff", "bounding-box"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny pipeline's original model and a minibatch of its training images with drawn regions."""
    model, context = original_and_context(tiny_pipeline(tmp_path_factory.mktemp("cache"), refiners=GUIDED))
    drawn = context.drawings.drawn.nonzero().flatten()[:32]
    return model, Batch(drawn, context.train.images[drawn], context.train.labels[drawn]), context.drawings.regions[drawn]


def guidance(refiner, model, batch, regions):
    return refiner.guidance(model, batch, regions, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", GUIDED)
def test_the_term_is_zero_when_everything_is_drawn_and_positive_otherwise(trained, name):
    model, batch, regions = trained
    refiner = create_refiner(name)
    everywhere = torch.ones_like(regions)
    limit = {"bounding-box": 1e-6, "actdiff": 1e-4}.get(name, 0.0)  # actdiff: PairwiseDistance's ε
    assert float(guidance(refiner, model, batch, everywhere)[1].detach().abs().max()) <= limit
    logits, term = guidance(refiner, model, batch, regions)
    assert logits.shape == (len(batch.images), 2) and bool(torch.isfinite(term).all()) and float(term.detach().mean()) > 0


@pytest.mark.parametrize("name", GUIDED)
def test_training_on_the_term_alone_lowers_it(trained, name):
    """Ten Adam steps (lr 1e-3) lower the term by 15 %; bounding-box's by 1 %: its box is the thin
    bar (about 3 % of the pixels, exactly, on the upsampled map), so its energy starts near 1 and
    longer training collapses Grad-CAM to all-zero maps, which pay 1 and give no gradient back."""
    model, batch, regions = trained
    model, refiner = copy.deepcopy(model).eval(), create_refiner(name)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = float(guidance(refiner, model, batch, regions)[1].detach().mean())
    for _ in range(10):
        term = guidance(refiner, model, batch, regions)[1].mean()
        optimiser.zero_grad()
        term.backward()
        optimiser.step()
    factor = 0.99 if name == "bounding-box" else 0.85
    assert float(guidance(refiner, model, batch, regions)[1].detach().mean()) < factor * before


def test_actdiffs_pixel_shuffle_keeps_the_drawing_and_permutes_the_rest():
    images = torch.rand(3, 3, 6, 6)
    regions = torch.zeros(3, 6, 6, dtype=torch.bool)
    regions[0, 1:3, 1:4] = True
    regions[1, :, :] = True  # everything drawn: nothing to shuffle
    shuffled = shuffle_outside(images, regions, torch.Generator().manual_seed(0), "pixels")  # image 2: no drawing, left whole
    assert torch.equal(shuffled[1:], images[1:])
    inside, outside = regions[0], ~regions[0]
    assert torch.equal(shuffled[0][:, inside], images[0][:, inside])
    before, after = images[0][:, outside], shuffled[0][:, outside]
    assert not torch.equal(before, after)
    # the same pixels (colour triples), in another order
    as_set = lambda pixels: sorted(map(tuple, pixels.T.tolist()))  # noqa: E731
    assert as_set(before) == as_set(after)


def test_actdiffs_distance_is_the_plain_l2_of_the_penultimate_features(trained):
    model, batch, regions = trained
    _, term = guidance(create_refiner("actdiff"), model, batch, regions)
    shuffled = shuffle_outside(batch.images, regions, torch.Generator().manual_seed(0))
    expected = (model.pool(model.features(batch.images)) - model.pool(model.features(shuffled)) + 1e-6).norm(dim=1)
    assert torch.allclose(term.detach(), expected.detach(), rtol=1e-5)


def test_box_energy_on_the_bilinearly_upsampled_map_by_hand():
    """A 2×2 map [[1, 0], [0, 0]] upsampled bilinearly to 4×4 and a box over the top-left 2×2 pixels:
    1 − Σ_box / Σ_all of the upsampled map, which differs from counting the one grid cell."""
    current = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    regions = torch.zeros(1, 4, 4, dtype=torch.bool)
    regions[0, 0, 0] = regions[0, 1, 1] = True  # its bounding box: rows 0–1, columns 0–1
    upsampled = F.interpolate(current[:, None], size=(4, 4), mode="bilinear", align_corners=False)[0, 0]
    expected = 1 - float(upsampled[:2, :2].sum() / upsampled.sum())
    assert float(box_energy(current, regions)) == pytest.approx(expected)
    assert 0 < expected < 1  # bilinear spreading leaves some energy outside the box
    assert float(box_energy(torch.zeros(1, 2, 2), regions)) == 1.0  # an all-zero map pays 1


def test_jtt_upsamples_the_errors_of_an_early_stopped_model_trained_from_scratch(tmp_path):
    errors = torch.tensor([True, False, True, False])
    assert upsampled_weights(errors, 20).tolist() == [21.0, 1.0, 21.0, 1.0]
    options = {"epochs": 1, "stage_one_epochs": 1, "upweight": 5}  # single values: no search
    pipeline = tiny_pipeline(tmp_path, refiners=["jtt"], refiner={"jtt": options})
    model, context = original_and_context(pipeline)
    built = []
    build = context.build_model
    refined = create_refiner("jtt", options).refine(model, type(context)(**{**vars(context), "build_model": lambda: built.append(1) or build()}))
    assert len(built) == 2  # stage one and stage two each start from a new model
    fresh = build()
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
    assert not torch.equal(refined.classifier.weight, fresh.classifier.weight)


def test_dfrs_regression_is_l1_penalised():
    """DFR's penalty is L1 (the DFR paper's): with a strong penalty, features that carry no signal get
    coefficients of exactly zero, which an L2 penalty never gives."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    features = np.column_stack([labels + 0.3 * rng.standard_normal(400), rng.standard_normal((400, 20))])
    scaler = StandardScaler().fit(features)
    regression = create_refiner("dfr").fit_regression(features, labels, 0.05, scaler, seed=0)
    assert regression.coef_[0, 0] != 0 and (regression.coef_[0, 1:] == 0).sum() >= 15


def test_dfr_tunes_on_a_balanced_half_and_refits_on_balanced_validation(tmp_path):
    rng = np.random.default_rng(0)
    groups = np.array([0] * 40 + [1] * 10 + [2] * 30 + [3] * 20)
    fitted, held_out = balanced_half(len(groups), groups, rng)
    assert len(held_out) == 50 and not set(fitted) & set(held_out)
    counts = np.bincount(groups[fitted], minlength=4)
    assert len(set(counts.tolist())) == 1 and counts[0] == min(np.bincount(groups[np.setdiff1d(np.arange(100), held_out)], minlength=4))
    every = balanced(np.arange(100), groups, rng)
    assert np.bincount(groups[every]).tolist() == [10, 10, 10, 10]

    pipeline = tiny_pipeline(tmp_path, refiners=["dfr"])
    model, context = original_and_context(pipeline)
    refined = create_refiner("dfr", {"retrains": 3}).refine(model, context)
    assert torch.equal(refined.features(context.val.images[:4]), model.features(context.val.images[:4]))  # only the last layer changes
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
