"""The neuron oracles: their ground-truth rules, their noise, and what they refuse."""

import numpy as np
import pytest
import torch
from crayon_plugins.plugins.concepts.top_patches import patch_boxes
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_oracle import assert_noise_rates

from crayon_plugins import create_annotation_source
from crayon_plugins.annotation.records import Answer, NeuronsToJudge
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import CrayonError
from crayon_plugins.model.concepts import NeuronConcepts

GRID, SIZE = (4, 4), (16, 16)


def image_set(labels, spurious, masks=None):
    n = len(labels)
    return ImageSet(
        images=torch.zeros(n, 3, *SIZE),
        labels=torch.as_tensor(labels, dtype=torch.int64),
        spurious=torch.as_tensor(spurious, dtype=torch.int64),
        masks=masks,
        ids=tuple(f"img-{i}" for i in range(n)),
        class_names=("a", "b"),
        spurious_names=("x", "y"),
    )


def concepts_for(activations, top_images, cells):
    c, k = top_images.shape
    return NeuronConcepts(
        neuron_ids=tuple(f"neuron-{i:04d}" for i in range(c)),
        activations=activations,
        top_images=top_images,
        top_activations=torch.ones(c, k),
        cells=cells,
        boxes=patch_boxes(cells, GRID, SIZE, 1),
        grid=GRID,
        image_size=SIZE,
    )


def patches_on_object(on_object):
    """Neuron ``c``'s patch ``j`` is centred on the object iff ``on_object[c][j]``: every patch has its
    own image, whose object covers grid cell (0, 0); a patch is centred on cell (0, 0) or (3, 3)."""
    on = torch.as_tensor(on_object, dtype=torch.bool)
    c, k = on.shape
    masks = torch.zeros(c * k, *SIZE, dtype=torch.bool)
    masks[:, :4, :4] = True
    cells = torch.where(on[..., None], torch.tensor([0, 0]), torch.tensor([3, 3]))
    zeros = [0] * (c * k)
    return NeuronsToJudge(concepts_for(torch.rand(c * k, c), torch.arange(c * k).view(c, k), cells), image_set(zeros, zeros, masks))


@settings(max_examples=40, deadline=None)
@given(on_object=st.integers(1, 8).flatmap(lambda k: st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=1, max_size=12)),
       threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_neuron_mask_oracle_without_noise_applies_its_rule_exactly(on_object, threshold):
    items = patches_on_object(on_object)
    answers = create_annotation_source("neuron-mask", {"relevant_above": threshold}).annotate_neurons(items)
    expected = [Answer.YES if np.mean(row) >= threshold else Answer.NO for row in on_object]
    assert answers.answers.tolist() == expected
    assert answers.item_ids == items.concepts.neuron_ids and set(answers.annotators) == {"neuron-mask"}


def weighted_auc(scores, positive, weights):
    """Brute-force weighted ROC AUC: Σ w_i·w_j·([s_i > s_j] + ½[s_i = s_j]) over positive i, negative j."""
    pos, neg = positive, ~positive
    s_i, s_j = scores[pos][:, None], scores[neg][None, :]
    pairs = weights[pos][:, None] * weights[neg][None, :]
    return float((pairs * ((s_i > s_j) + 0.5 * (s_i == s_j))).sum() / pairs.sum())


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(8, 40), c=st.integers(1, 6), balance=st.booleans())
def test_neuron_metadata_oracle_without_noise_applies_its_rule_exactly(data, n, c, balance):
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    spurious = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    assume(0 < labels.sum() < n and 0 < spurious.sum() < n)
    activations = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n * c, max_size=n * c)), dtype=float).reshape(n, c)
    groups = labels * 2 + spurious
    weights = 1.0 / np.bincount(groups)[groups] if balance else np.ones(n)
    expected = []
    for neuron in range(c):
        by_label = abs(weighted_auc(activations[:, neuron], labels == 1, weights) - 0.5)
        by_spurious = abs(weighted_auc(activations[:, neuron], spurious == 1, weights) - 0.5)
        assume(abs(by_label - by_spurious) > 1e-9)  # a tie is decided by rounding
        expected.append(Answer.NO if by_spurious > by_label else Answer.YES)
    concepts = concepts_for(torch.from_numpy(activations).float(), torch.zeros(c, 1, dtype=torch.int64), torch.zeros(c, 1, 2, dtype=torch.int64))
    items = NeuronsToJudge(concepts, image_set(labels, spurious))
    answers = create_annotation_source("neuron-metadata", {"balance_groups": balance}).annotate_neurons(items)
    assert answers.answers.tolist() == expected


def test_metadata_oracle_prunes_an_attribute_detector_and_keeps_a_label_detector_at_95_percent_correlation():
    generator = torch.Generator().manual_seed(0)
    n = 4000
    labels = torch.randint(0, 2, (n,), generator=generator)
    spurious = torch.where(torch.rand(n, generator=generator) < 0.95, labels, 1 - labels)
    noise = lambda: 0.3 * torch.randn(n, generator=generator)  # noqa: E731
    activations = torch.stack([spurious + noise(), labels + noise(), noise()], dim=1)
    concepts = concepts_for(activations, torch.zeros(3, 1, dtype=torch.int64), torch.zeros(3, 1, 2, dtype=torch.int64))
    oracle = create_annotation_source("neuron-metadata")
    by_label, by_spurious = oracle.separations(NeuronsToJudge(concepts, image_set(labels, spurious)))
    assert by_spurious[0] > 0.45 and by_label[0] < 0.05  # balanced: the attribute detector says nothing about the label
    assert oracle.annotate_neurons(NeuronsToJudge(concepts, image_set(labels, spurious))).answers[:2].tolist() == [Answer.NO, Answer.YES]


@settings(max_examples=8, deadline=None)
@given(flip=st.floats(0, 0.5), abstain=st.floats(0, 0.5), seed=st.integers(0, 1000), name=st.sampled_from(["neuron-mask", "neuron-metadata"]))
def test_neuron_oracles_flip_and_abstain_at_their_rates(flip, abstain, seed, name):
    c = 3000
    items = patches_on_object([[i % 2 == 0] for i in range(c)])
    oracle = create_annotation_source(name, {"flip_rate": flip, "abstain_rate": abstain, "seed": seed})
    assert_noise_rates(oracle.truth(items), oracle.annotate_neurons(items).answers, flip, abstain)


def test_neuron_mask_oracle_without_masks_points_to_the_metadata_oracle():
    items = patches_on_object([[True]])
    items = NeuronsToJudge(items.concepts, image_set([0], [0]))
    with pytest.raises(CrayonError, match="needs object masks.*use neuron-metadata"):
        create_annotation_source("neuron-mask").annotate_neurons(items)


def test_sources_say_what_they_judge():
    assert create_annotation_source("saliency-oracle").judges() == {"maps", "attention"}
    assert create_annotation_source("neuron-mask").judges() == {"neurons"}
    assert create_annotation_source("neuron-metadata").judges() == {"neurons"}
