"""The real pipeline on a tiny configuration (seconds)."""

import json
import re

import pytest
import torch

from crayon_plugins import ConfigError, Pipeline, PluginError
from crayon_plugins.annotation.records import MapsToJudge
from crayon_plugins.api.components import AnnotationSource, ConceptExtractor
from crayon_plugins.config import RunConfig
from crayon_plugins.factory import create_refiner
from crayon_plugins.registry import Registration, default_registry
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.stages.explain import original_maps, predicted_maps, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.run.stages.refine import refinement_context
from crayon_plugins.run.stages.report import RunObserver

TINY = {
    "dataset": {"name": "spurious-bars", "n_train": 192, "n_test": 64, "image_size": 32},
    "backbone": {"name": "timm", "model": "resnet10t"},
    "training": {"epochs": 1, "batch_size": 64},
    "concepts": {"k": 10},
    "refiners": ["crayon-attention", "group-balanced"],
    # A one-epoch 32-px model's neurons are mostly judged irrelevant, which pruning refuses
    # (tests/test_bad_inputs.py); these tests check the plumbing, so they allow it.
    "refiner": {"crayon-attention": {"epochs": 1}, "group-balanced": {"epochs": 1}, "crayon-pruning": {"max_pruned": 1.0}, "crayon-attention+pruning": {"epochs": 1, "max_pruned": 1.0}},
}


def tiny_pipeline(cache_dir, **overrides):
    config = RunConfig.model_validate({**TINY, **overrides})
    return Pipeline.from_config(config, cache=ArtefactCache(cache_dir))


def original_and_context(pipeline):
    """The original model and the context a refiner gets, as ``Pipeline.run`` builds them."""
    train = pipeline.dataset.load("train")
    model = original_model(pipeline, train).model
    return model, refinement_context(pipeline, model, train)


def test_run_writes_results_json(tmp_path):
    results = tiny_pipeline(tmp_path / "cache").run(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["seed"] == 0 and written["dataset"].startswith("spurious-bars(")
    assert [row["method"] for row in written["rows"]] == ["original", "crayon-attention", "group-balanced"]
    for row in written["rows"]:
        metrics = row["metrics"]
        assert set(metrics) >= {"accuracy", "wga", "mga", "groups"}
        assert all(0 <= metrics[k] <= 1 for k in ("accuracy", "wga", "mga"))
        assert metrics["wga"] == min(metrics["groups"].values())
    assert sum(written["annotations"].values()) == 192
    assert results.row("original").metrics == written["rows"][0]["metrics"]


def test_observers_hear_each_stage_and_a_run_without_them_prints_nothing(tmp_path, capsys):
    heard = []

    class Recorder(RunObserver):
        def on_original(self, pipeline, original):
            heard.append(("original", original.loaded))

        def on_annotations(self, pipeline, results, context):
            heard.append(("annotations", sum(results.annotations.values())))

        def on_method_end(self, pipeline, results, row, model):
            heard.append(("row", row.method, len(results.rows)))

    capsys.readouterr()
    tiny_pipeline(tmp_path / "cache", refiners=["group-balanced"]).run(observers=[Recorder()])
    assert heard == [("original", False), ("annotations", 0), ("row", "original", 1), ("row", "group-balanced", 2)]
    assert "original model" not in capsys.readouterr().err
    tiny_pipeline(tmp_path / "cache", refiners=["group-balanced"]).run()
    assert "original model: loaded from cache" in capsys.readouterr().err


def test_same_seed_same_numbers_and_the_second_run_reuses_the_cache(tmp_path):
    first = tiny_pipeline(tmp_path / "cache")
    a = first.run()
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*.pt"))
    assert [p.parts[1] for p in files] == ["answers", "features", "features", "features", "maps", "models"]  # features: train, val and test
    stamps = [p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pt")]
    second = tiny_pipeline(tmp_path / "cache")
    assert original_model(second, second.dataset.load("train")).loaded
    b = second.run()
    assert [r.metrics for r in a.rows] == [r.metrics for r in b.rows] and a.annotations == b.annotations
    assert stamps == [p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pt")]  # nothing rewritten
    c = tiny_pipeline(tmp_path / "cache", seed=1).run()
    assert c.annotations != a.annotations  # another seed trains another model (its maps differ)


def test_refiners_do_not_modify_the_original_model(tmp_path):
    refiners = ["crayon-attention", "group-balanced", "finetune", "crayon-pruning", "crayon-attention+pruning", "retrain-classifier"]
    pipeline = tiny_pipeline(tmp_path / "cache", refiners=refiners)
    model, context = original_and_context(pipeline)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for refiner in pipeline.refiners.values():
        refined = refiner.refine(model, context)
        assert refined is not model
        assert any(not torch.equal(before[k], v) for k, v in refined.state_dict().items())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_from_scratch_is_deterministic(tmp_path):
    def train_once(cache):
        pipeline = tiny_pipeline(cache)
        original = original_model(pipeline, pipeline.dataset.load("train"))
        assert not original.loaded
        return original.model.state_dict()

    torch.rand(7)  # whatever the global random state was before, the model is the same
    a = train_once(tmp_path / "a")
    b = train_once(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_is_crayon_attention_without_annotations(tmp_path):
    """The control refiner trains exactly as crayon-attention does when no answer adds a term."""
    model, context = original_and_context(tiny_pipeline(tmp_path / "cache"))
    assert context.annotations.counts()["no"] + context.annotations.counts()["yes"] > 0
    finetuned = create_refiner("finetune", {"epochs": 1}).refine(model, context)
    silent = create_refiner("crayon-attention", {"epochs": 1, "w_yes": 0, "w_no": 0}).refine(model, context)
    guided = create_refiner("crayon-attention", {"epochs": 1}).refine(model, context)
    a, b, c = (m.state_dict() for m in (finetuned, silent, guided))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert any(not torch.allclose(a[k].float(), c[k].float(), atol=1e-5) for k in a)


def test_pruning_refiners_report_neuron_answers_and_neurons_pruned(tmp_path):
    pipeline = tiny_pipeline(tmp_path / "cache", refiners=["crayon-pruning", "crayon-attention+pruning"])
    results = pipeline.run(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    answers = written["neuron_annotations"]
    assert set(answers) == {"relevant", "irrelevant", "maybe"} and sum(answers.values()) == 128
    pruned = {row["method"]: row["details"]["neurons_pruned"] for row in written["rows"]}
    assert pruned == {"original": 0, "crayon-pruning": answers["irrelevant"], "crayon-attention+pruning": answers["irrelevant"]}
    assert answers["irrelevant"] > 0  # otherwise this test would prove nothing
    assert [column.header for column in results.table().columns] == ["method", "WGA", "MGA", "accuracy", "RA", "UA", "pruned"]


def test_runs_without_pruning_neither_extract_concepts_nor_show_a_pruned_column(tmp_path):
    results = tiny_pipeline(tmp_path / "cache", refiners=["finetune"]).run()
    assert results.neuron_annotations == {} and not (tmp_path / "cache" / "concepts").exists()
    assert [column.header for column in results.table().columns] == ["method", "WGA", "MGA", "accuracy", "RA", "UA"]


class RaisingExtractor(ConceptExtractor):
    def extract(self, model, train):
        raise ValueError("no concepts today")


class MalformedExtractor(ConceptExtractor):
    def extract(self, model, train):
        return {"neuron-0000": "stripes"}


@pytest.mark.parametrize(
    ("extractor", "message"),
    [(RaisingExtractor, "concepts 'broken' failed: ValueError: no concepts today"), (MalformedExtractor, "concepts 'broken' returned dict, not NeuronConcepts")],
)
def test_a_broken_concept_extractor_is_named(tmp_path, extractor, message):
    registry = default_registry()
    registry.components["concept_extractor"]["broken"] = Registration("concept_extractor", "broken", extractor, "test-plugin")
    try:
        pipeline = tiny_pipeline(tmp_path / "cache", refiners=["crayon-pruning"], concepts={"name": "broken"})
        with pytest.raises(PluginError, match=re.escape(message)):
            pipeline.run()
    finally:
        del registry.components["concept_extractor"]["broken"]


def test_gradia_and_the_reasonability_matrix_in_a_run(tmp_path):
    pipeline = tiny_pipeline(tmp_path / "cache", refiners=["gradia"], metrics=["group-accuracy", "reasonability"], refiner={"gradia": {"epochs": 1}})
    results = pipeline.run(tmp_path / "out")
    for row in results.rows:
        shares, counts = row.metrics["reasonability"], row.metrics["reasonability_counts"]
        assert sum(counts.values()) == 64 and sum(shares.values()) == pytest.approx(1.0)
    assert [c.header for c in results.table().columns] == ["method", "WGA", "MGA", "RA", "UA"]  # no accuracy metric configured


class PlainJudge(AnnotationSource):
    def annotate_maps(self, items):
        raise AssertionError("not called")


def test_map_based_refiners_need_an_annotator_that_draws(tmp_path):
    registry = default_registry()
    registry.components["annotation_source"]["plain"] = Registration("annotation_source", "plain", PlainJudge, "test-plugin")
    try:
        with pytest.raises(ConfigError, match=re.escape("annotator: 'plain' does not draw attention maps, which refiners ['gradia'] need")):
            tiny_pipeline(tmp_path, refiners=["gradia"], annotator={"name": "plain"})
    finally:
        del registry.components["annotation_source"]["plain"]


def test_a_run_starts_from_the_users_checkpoint_and_its_content_keys_the_cache(tmp_path):
    trained = tiny_pipeline(tmp_path / "cache")
    train = load(trained, "train")
    model = original_model(trained, train).model
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    pipeline = tiny_pipeline(tmp_path / "cache", original={"checkpoint": str(path)})
    loaded = original_model(pipeline, train)
    assert loaded.curve is None and all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    results = pipeline.run(tmp_path / "out")
    assert results.row("original").metrics["wga"] == trained.run().row("original").metrics["wga"]
    with torch.no_grad():
        model.classifier.weight.add_(1)
    torch.save(model.state_dict(), path)
    assert tiny_pipeline(tmp_path / "cache", original={"checkpoint": str(path)}).model_key != pipeline.model_key
    with pytest.raises(ConfigError, match="original.checkpoint: no file"):
        tiny_pipeline(tmp_path / "cache", original={"checkpoint": str(tmp_path / "missing.pt")})


def test_extra_evaluation_splits_reach_the_metrics_that_need_them(tmp_path):
    with pytest.raises(ConfigError, match="'mr' needs the evaluation split\\(s\\) mixed_rand, and dataset 'spurious-bars' has none"):
        tiny_pipeline(tmp_path / "cache", metrics=["accuracy", "mr"])


def test_gradia_gets_answers_about_the_maps_of_the_classes_the_original_predicts(tmp_path):
    """GRADIA's people judged the map of the predicted class: the run explains the original model
    for its predictions (the label's map wherever it is right), asks the annotator about those maps
    and hands gradia those answers; a refiner asking about the labels' maps gets its own."""
    pipeline = tiny_pipeline(tmp_path / "cache", refiners=["gradia", "crayon-attention"], refiner={"gradia": {"epochs": 1}, "crayon-attention": {"epochs": 1}})
    train = pipeline.dataset.load("train")
    model, context = original_and_context(pipeline)
    classes, maps = predicted_maps(pipeline, model, train, shared_features(pipeline, model, train, "train"))
    wrong = classes != train.labels
    assert bool(wrong.any()) and bool((~wrong).any())  # a one-epoch model gets some training images wrong
    label_maps = original_maps(pipeline, model, train)
    assert torch.equal(maps[~wrong], label_maps[~wrong]) and not torch.equal(maps[wrong], label_maps[wrong])
    judge = pipeline.annotator.annotate_maps(MapsToJudge.of(train, maps, classes))
    assert torch.equal(context.predicted_map_answers, judge.aligned(train.ids))
    assert torch.equal(context.map_answers, pipeline.annotator.annotate_maps(MapsToJudge.of(train, label_maps)).aligned(train.ids))
    assert context.annotation_stats["predicted-maps"]["predicted_wrong"] == int(wrong.sum())
    results = pipeline.run(tmp_path / "out")
    assert sum(results.predicted_map_annotations.values()) == int((context.predicted_map_answers >= 0).sum())
    card = json.loads((tmp_path / "out" / "models" / "gradia" / "card.json").read_text())
    assert card["annotations"]["predicted-maps"] == results.predicted_map_annotations
