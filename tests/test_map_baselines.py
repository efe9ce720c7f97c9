"""The map-guided baselines and JTT: each term vanishes where its paper says and training lowers it."""

import copy

import pytest
import torch

from crayon_plugins import create_refiner

from test_pipeline import original_and_context, tiny_pipeline

GUIDED = ["rrr", "gradmask", "actdiff", "bounding-box"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny pipeline's original model and a minibatch of its training images with drawn regions."""
    model, context = original_and_context(tiny_pipeline(tmp_path_factory.mktemp("cache"), refiners=GUIDED))
    drawn = context.attention_drawn.nonzero().flatten()[:32]
    return model, context.train.images[drawn], context.train.labels[drawn], context.attention[drawn]


@pytest.mark.parametrize("name", GUIDED)
def test_the_term_is_zero_when_everything_is_drawn_and_positive_otherwise(trained, name):
    model, images, labels, regions = trained
    refiner = create_refiner(name)
    everywhere = torch.ones_like(regions)
    if name == "bounding-box":  # a box over the whole image holds all of any map
        assert float(refiner.guidance(model, images, labels, everywhere)[1].detach().abs().max()) < 1e-6
    else:
        assert float(refiner.guidance(model, images, labels, everywhere)[1].detach().abs().max()) == 0.0
    logits, term = refiner.guidance(model, images, labels, regions)
    assert logits.shape == (len(images), 2) and bool(torch.isfinite(term).all()) and float(term.detach().mean()) > 0


@pytest.mark.parametrize("name", GUIDED)
def test_training_on_the_term_alone_lowers_it(trained, name):
    """Ten Adam steps (lr 1e-3): longer, bounding-box's Grad-CAM collapses to all-zero maps, which pay
    the full energy loss of 1 and give no gradient back (seen at step 20 on this tiny model)."""
    model, images, labels, regions = trained
    model, refiner = copy.deepcopy(model).eval(), create_refiner(name)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = float(refiner.guidance(model, images, labels, regions)[1].detach().mean())
    for _ in range(10):
        term = refiner.guidance(model, images, labels, regions)[1].mean()
        optimiser.zero_grad()
        term.backward()
        optimiser.step()
    assert float(refiner.guidance(model, images, labels, regions)[1].detach().mean()) < 0.85 * before


def test_jtt_draws_the_original_models_errors_upweight_times_as_often(tmp_path):
    model, context = original_and_context(tiny_pipeline(tmp_path))
    weights = create_refiner("jtt", {"upweight": 7}).sample_weights(model, context)
    wrong = model(context.train.images).argmax(dim=1) != context.train.labels
    assert torch.equal(weights, torch.where(wrong, 7.0, 1.0).double()) and bool(wrong.any())
