"""The embedded benchmark shows the shortcut with the default configuration (about 1.5 min on 2 cores)."""

import pytest

from crayon_plugins import Pipeline, RunConfig


@pytest.mark.slow
def test_erm_learns_the_shortcut_on_the_default_benchmark():
    pipeline = Pipeline.from_config(RunConfig(refiners=[]))
    train, test = pipeline.dataset.load("train"), pipeline.dataset.load("test")
    model, _ = pipeline.original_model(train)
    metrics = pipeline.evaluate(model, test, train.group_shares())
    assert metrics["accuracy"] >= 0.85  # in-distribution accuracy: the shortcut pays on the training mix
    assert metrics["wga"] <= 0.45  # ... and fails on the group that contradicts it
