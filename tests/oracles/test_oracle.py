import pytest
import torch
from crayon_plugins.oracles.noise import NoiseParams, apply_noise
from hypothesis import given, settings
from hypothesis import strategies as st

from crayon_plugins import create_annotation_source
from crayon_plugins.annotation.records import Answer, MapsToJudge
from crayon_plugins.errors import ConfigError, CrayonError


def items_with_share(shares):
    """Maps on a 4×4 grid whose energy share on the object's cells is exactly ``shares``."""
    n = len(shares)
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[:, :4, :4] = True  # the object touches grid cell (0, 0) only
    maps = torch.zeros(n, 4, 4)
    for i, share in enumerate(shares):
        maps[i, 0, 0] = share
        maps[i, 3, 3] = 1 - share
    ids = tuple(f"item-{i}" for i in range(n))
    zeros = torch.zeros(n, dtype=torch.int64)
    return MapsToJudge(ids, torch.zeros(n, 3, 16, 16), maps, zeros, zeros, masks)


def test_noise_free_oracle_applies_its_thresholds():
    oracle = create_annotation_source("saliency-oracle", {"yes_above": 0.6, "no_below": 0.3})
    answers = oracle.annotate_maps(items_with_share([0.0, 0.29, 0.3, 0.59, 0.6, 1.0]))
    assert answers.answers.tolist() == [Answer.NO, Answer.NO, Answer.MAYBE, Answer.MAYBE, Answer.YES, Answer.YES]
    assert set(answers.annotators) == {"saliency-oracle"}


def test_thresholds_out_of_order_are_a_config_error():
    with pytest.raises(ConfigError, match="no_below"):
        create_annotation_source("saliency-oracle", {"yes_above": 0.2, "no_below": 0.5})


def test_oracle_without_masks_says_so():
    items = items_with_share([0.5])
    items = MapsToJudge(items.ids, items.images, items.maps, items.labels, items.spurious, None)
    with pytest.raises(CrayonError, match="needs object masks"):
        create_annotation_source("saliency-oracle").annotate_maps(items)


@settings(max_examples=12, deadline=None)
@given(flip=st.floats(0, 0.5), abstain=st.floats(0, 0.5), seed=st.integers(0, 1000))
def test_noise_rates_match_their_settings(flip, abstain, seed):
    n = 6000
    truth = torch.tensor([Answer.YES, Answer.NO] * (n // 2))
    ids = tuple(f"x{i}" for i in range(n))
    noisy = apply_noise(truth, ids, NoiseParams(flip_rate=flip, abstain_rate=abstain, seed=seed))
    assert_noise_rates(truth, noisy, flip, abstain)


def assert_noise_rates(truth, noisy, flip, abstain):
    """``noisy`` abstains at ``abstain`` and flips a decided ``truth`` at ``flip``, within four
    standard errors of a proportion."""
    maybe = noisy == Answer.MAYBE
    flipped = ~maybe & (noisy != truth)
    tolerance = 4 * (0.25 / len(truth)) ** 0.5
    assert abs(maybe.double().mean().item() - abstain) < tolerance
    assert abs(flipped.double().mean().item() - (1 - abstain) * flip) < tolerance


def test_noise_is_seeded_per_item_and_annotator():
    truth = torch.tensor([Answer.YES] * 400)
    ids = tuple(f"x{i}" for i in range(400))
    params = NoiseParams(flip_rate=0.3, abstain_rate=0.2, seed=7)
    full = apply_noise(truth, ids, params)
    assert torch.equal(full, apply_noise(truth, ids, params))
    # an item's answer does not depend on which other items are annotated, or their order
    assert torch.equal(apply_noise(truth[:50].flip(0), ids[:50][::-1], params), full[:50].flip(0))
    other = apply_noise(truth, ids, params.model_copy(update={"annotator": "someone-else"}))
    assert not torch.equal(full, other)


def test_truthful_maybe_is_never_flipped():
    truth = torch.full((500,), int(Answer.MAYBE))
    noisy = apply_noise(truth, tuple(map(str, range(500))), NoiseParams(flip_rate=1.0))
    assert (noisy == Answer.MAYBE).all()
