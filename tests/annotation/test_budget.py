"""Budget selection: sizes, nesting, loss-guided ranking, and the pipeline's cut."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import tiny_pipeline

from crayon_plugins.annotation.budget import budget_size, image_losses, neuron_taylor_scores, selected
from crayon_plugins.annotation.records import NOT_ANNOTATED, MapsToJudge
from crayon_plugins.config import Budget, Panel
from crayon_plugins.model.features import SharedFeatures
from crayon_plugins.run.stages.explain import original_maps, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.run.stages.refine import refinement_context


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 500), small=st.floats(0.001, 1), large=st.floats(0.001, 1), seed=st.integers(0, 10), strategy=st.sampled_from(["uniform", "loss-guided"]))
def test_budgets_have_their_size_and_a_smaller_one_is_inside_a_larger_one(n, small, large, seed, strategy):
    small, large = sorted((small, large))
    scores = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    pick = lambda fraction: selected(n, Budget(fraction=fraction, selection=strategy), seed, lambda: scores)  # noqa: E731
    a, b = pick(small), pick(large)
    assert len(a) == budget_size(n, small) and (len(a) == 1 or abs(len(a) - small * n) <= 0.5)
    assert len(set(a.tolist())) == len(a) and set(a.tolist()) <= set(b.tolist())
    rest = torch.ones(n, dtype=torch.bool)
    rest[a] = False
    if strategy == "loss-guided" and rest.any():
        assert scores[a].min() >= scores[rest].max()


def test_the_pipeline_annotates_only_the_budget_and_loss_guided_takes_the_hardest_images(tmp_path):
    pipeline = tiny_pipeline(tmp_path, budget={"fraction": 0.1, "selection": "loss-guided"}, refiners=["crayon-pruning", "crayon-attention"])
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    context = refinement_context(pipeline, model, train)
    annotated = context.map_answers != NOT_ANNOTATED
    assert int(annotated.sum()) == budget_size(len(train), 0.1) == context.annotation_stats["maps"]["annotated"]
    losses = image_losses(model, context.features, train.labels)
    assert losses[annotated].min() >= losses[~annotated].max()
    assert int((context.neurons.answers != NOT_ANNOTATED).sum()) == budget_size(len(context.neurons.concepts), 0.1)


def test_a_dead_neuron_has_no_taylor_importance_and_a_used_one_has_some(tmp_path):
    pipeline = tiny_pipeline(tmp_path)
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    features = shared_features(pipeline, model, train, "train")
    zeroed = features.pooled.clone()
    zeroed[:, 3] = 0
    dead = SharedFeatures(train.images, zeroed, features.digest, features.device)
    scores = neuron_taylor_scores(model, dead, train.labels)
    assert scores[3] == 0 and scores.sum() > 0
    model.zero_grad(set_to_none=True)
    from_images = neuron_taylor_scores(model, SharedFeatures(train.images, None, features.digest, features.device), train.labels)
    assert torch.allclose(from_images, neuron_taylor_scores(model, features, train.labels), rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # scoring leaves the model's gradients alone


def test_a_panel_of_three_reports_its_agreement_and_error(tmp_path):
    pipeline = tiny_pipeline(tmp_path, panel=Panel(size=3, spread=0.5).model_dump(), annotator={"name": "saliency-oracle", "flip_rate": 0.2})
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    stats = refinement_context(pipeline, model, train).annotation_stats["maps"]
    assert 0 < stats["cohen_kappa"] < 1 and 0 < stats["krippendorff_alpha"] < 1
    assert 0 < stats["error_rate"] < 0.2 and stats["yes"] + stats["no"] + stats["maybe"] == 1


def test_a_panel_draws_where_most_of_its_annotators_drew_within_the_budget(tmp_path):
    pipeline = tiny_pipeline(
        tmp_path,
        refiners=["gradia"],
        panel={"size": 3},
        annotator={"name": "saliency-oracle", "region": "shift", "region_pixels": 3},
        budget={"fraction": 0.5},
    )
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    context = refinement_context(pipeline, model, train)
    maps = original_maps(pipeline, model, train)
    size = tuple(train.images.shape[-2:])
    votes = sum(source.annotate_attention(MapsToJudge.of(train, maps)).aligned(train.ids, size)[0].int() for source in pipeline.map_panel)
    chosen = context.map_answers != NOT_ANNOTATED
    assert torch.equal(context.drawings.regions[chosen], votes[chosen] >= 2)  # each annotator shifts its own way
    assert not context.drawings.regions[~chosen].any() and int(context.drawings.drawn.sum()) <= int(chosen.sum())
    assert (votes[chosen] == 1).any()  # the annotators did disagree somewhere
