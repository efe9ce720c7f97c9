"""The default configuration's targets, second half: group-balanced training and the pruning
refiners lift worst-group accuracy. It shares the original model with ``test_benchmark.py`` through
``benchmark_cache``; its ``minutes`` (an ordering key, see ``tests/conftest.py``) put it after the
one-minute files, so under ``make test`` the other worker has cached that model by the time it starts."""

import pytest

from crayon_plugins import Pipeline, RunConfig


@pytest.mark.slow(minutes=0.5)
def test_group_balancing_and_pruning_lift_worst_group_accuracy(benchmark_cache):
    refiners = ["group-balanced", "crayon-pruning", "crayon-attention+pruning"]
    results = Pipeline.from_config(RunConfig(refiners=refiners), cache=benchmark_cache).run()
    original, balanced, pruning, both = (results.row(name).metrics for name in ["original", *refiners])
    assert balanced["wga"] >= 0.80  # the core feature stays learnable
    assert pruning["wga"] >= original["wga"] + 0.15  # neuron-mask, the default neuron oracle
    assert both["wga"] >= original["wga"] + 0.25
    pruned = results.row("crayon-pruning").details["neurons_pruned"]
    assert pruned == results.neuron_annotations["irrelevant"] and 0 < pruned < 128


@pytest.mark.slow
def test_pruning_with_the_metadata_oracle_lifts_worst_group_accuracy(benchmark_cache):
    config = RunConfig(refiners=["crayon-pruning"], neuron_annotator={"name": "neuron-metadata"})
    results = Pipeline.from_config(config, cache=benchmark_cache).run()
    assert results.row("crayon-pruning").metrics["wga"] >= results.row("original").metrics["wga"] + 0.15
