"""Issue 2's targets on the default configuration: the shortcut, and the two refiners that fix it (~4 min)."""

import pytest

from crayon_plugins import Pipeline, RunConfig


@pytest.mark.slow
def test_default_benchmark_shows_the_shortcut_and_the_refiners_fix_it():
    results = Pipeline.from_config(RunConfig(refiners=["crayon-attention", "group-balanced"])).run()
    original, attention, balanced = (results.row(name).metrics for name in ("original", "crayon-attention", "group-balanced"))
    assert original["accuracy"] >= 0.85  # in-distribution accuracy: the shortcut pays on the training mix
    assert original["wga"] <= 0.45  # ... and fails on the group that contradicts it
    assert attention["wga"] >= original["wga"] + 0.25 and attention["mga"] >= original["mga"]
    assert balanced["wga"] >= 0.80  # the core feature stays learnable
