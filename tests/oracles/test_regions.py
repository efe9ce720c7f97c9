"""Drawn attention regions: the oracle's imperfect drawings and their geometry."""

import numpy as np
import pytest
import torch
from crayon_plugins.oracles.regions import dilate, erode, shift
from hypothesis import given, settings
from hypothesis import strategies as st

from crayon_plugins import create_annotation_source
from crayon_plugins.annotation.records import MapsToJudge
from crayon_plugins.model.maps import bounding_boxes

masks_strategy = st.integers(1, 4).flatmap(
    lambda n: st.lists(st.lists(st.booleans(), min_size=12 * 12, max_size=12 * 12), min_size=n, max_size=n)
).map(lambda rows: torch.tensor(rows).view(-1, 12, 12))


@settings(max_examples=50, deadline=None)
@given(masks=masks_strategy, pixels=st.integers(0, 3))
def test_dilation_grows_erosion_shrinks_and_they_undo_each_other_as_a_closing(masks, pixels):
    grown, shrunk = dilate(masks, pixels), erode(masks, pixels)
    assert bool((grown >= masks).all()) and bool((shrunk <= masks).all())
    assert bool((erode(grown, pixels) >= masks).all())  # a closing contains the mask


@settings(max_examples=50, deadline=None)
@given(masks=masks_strategy)
def test_a_bounding_box_is_the_smallest_box_holding_the_region(masks):
    boxes = bounding_boxes(masks)
    assert bool((boxes >= masks).all())
    for mask, box in zip(masks, boxes):
        if mask.any():
            rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
            expected = torch.zeros_like(mask)
            expected[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
            assert torch.equal(box, expected)
        else:
            assert not box.any()


def test_a_shift_moves_a_region_inside_the_image_without_changing_it():
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 4:6, 3:5] = True
    moved = shift(mask, 2, np.array([0.0]))  # angle 0: two pixels to the right
    assert torch.equal(moved[0, 4:6, 5:7], torch.ones(2, 2, dtype=torch.bool)) and int(moved.sum()) == 4
    assert int(shift(mask, 9, np.array([np.pi / 2])).sum()) == 0  # pushed out of the image


def oracle_items(n=400):
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[:, 5:11, 7:9] = True
    zeros = torch.zeros(n, dtype=torch.int64)
    return MapsToJudge(tuple(f"i{k}" for k in range(n)), torch.zeros(n, 3, 16, 16), torch.zeros(n, 4, 4), zeros, zeros, masks)


def test_the_oracle_draws_the_mask_with_its_imperfection():
    items = oracle_items()
    exact = create_annotation_source("saliency-oracle").annotate_attention(items)
    assert torch.equal(exact.regions, items.masks.all()) and set(exact.annotators) == {"saliency-oracle"}
    grown = create_annotation_source("saliency-oracle", {"region": "dilate", "region_pixels": 1}).annotate_attention(items)
    assert int(grown.regions[0].sum()) == 8 * 4
    moved = create_annotation_source("saliency-oracle", {"region": "shift", "region_pixels": 3}).annotate_attention(items)
    assert all(int(r.sum()) == 12 for r in moved.regions)  # inside the image: same size
    assert len({tuple(r.nonzero()[0].tolist()) for r in moved.regions}) > 4  # directions differ per item


@settings(max_examples=5, deadline=None)
@given(abstain=st.floats(0, 0.6), seed=st.integers(0, 100))
def test_abstaining_annotators_leave_images_without_a_drawing(abstain, seed):
    n = 3000
    drawings = create_annotation_source("saliency-oracle", {"abstain_rate": abstain, "seed": seed}).annotate_attention(oracle_items(n))
    assert abs((1 - len(drawings.item_ids) / n) - abstain) < 4 * (0.25 / n) ** 0.5


def test_answers_and_drawings_are_placed_by_item_id_and_refuse_repeats_and_strangers():
    from crayon_plugins.annotation.records import NOT_ANNOTATED, Annotations, AttentionMaps

    ids = ("a", "b", "c")
    answers = Annotations(("c", "a"), torch.tensor([1, 0]), ("x", "x"))
    assert answers.aligned(ids).tolist() == [0, NOT_ANNOTATED, 1]
    regions = torch.zeros(1, 2, 2, dtype=torch.bool)
    regions[0, 0, 0] = True
    placed, drawn = AttentionMaps(("b",), regions, ("x",)).aligned(ids, (2, 2))
    assert drawn.tolist() == [False, True, False] and torch.equal(placed[1], regions[0])
    with pytest.raises(ValueError, match="'a' has several answers: aggregate the panel first"):
        Annotations(("a", "a"), torch.tensor([1, 0]), ("x", "y")).aligned(ids)
    with pytest.raises(ValueError, match="unknown item 'z'"):
        AttentionMaps(("z",), regions, ("x",)).aligned(ids, (2, 2))
