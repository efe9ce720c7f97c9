"""The example third-party plugin in plugins/examples: installed, discovered, run, checked."""

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_study import crayon

from crayon_plugins.registry import ENTRY_POINT_GROUP, build_registry
from crayon_plugins.testing import CHECKS, PROMISES

EXAMPLE = Path(__file__).parents[2] / "plugins" / "examples"


def install(project: Path, target: Path) -> dict[str, str]:
    """``pip install`` ``project`` into ``target`` (offline: no dependencies, no build isolation) and
    return an environment whose Python sees it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(project)],
        check=True, capture_output=True, text=True,
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])), "CRAYON_PROGRESS": "0"}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The environment in which the example plugin is installed, and where it went. It is built from a
    copy, so setuptools' build folders never land in the repository."""
    source = tmp_path_factory.mktemp("source") / "example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    return install(source, target), target


def test_crayon_plugins_lists_the_example_components(example):
    env, _ = example
    listing = json.loads(subprocess.run(crayon("plugins", "--json"), env=env, check=True, capture_output=True, text=True).stdout)
    mine = [c for c in listing["components"] if c["plugin"] == "example"]
    assert mine == [
        {"kind": "interpreter", "name": "gradient-x-input", "plugin": "example", "module": "crayon_example.gradient_input"},
        {"kind": "refiner", "name": "cosine-attention", "plugin": "example", "module": "crayon_example.cosine_attention"},
    ]
    assert listing["broken"] == [] and listing["conflicts"] == []


def test_the_installed_example_keeps_every_promise(example, monkeypatch):
    _, target = example
    monkeypatch.syspath_prepend(str(target))
    registry = build_registry(metadata.entry_points(group=ENTRY_POINT_GROUP))
    mine = [r for r in registry.all() if r.plugin == "example"]
    assert [r.name for r in mine] == ["gradient-x-input", "cosine-attention"]
    for registration in mine:
        report = CHECKS[registration.kind](registration.component())
        assert set(report.kept) == set(PROMISES[registration.kind])


@pytest.mark.slow
def test_the_example_runs_end_to_end_through_crayon_run(example, tmp_path):
    """Both plugin components in one run: the annotator judges gradient × input maps, and the cosine
    refiner trains on the answers."""
    env, _ = example
    config = tmp_path / "tiny.toml"
    config.write_text(
        """
refiners = ["cosine-attention"]
interpreter = { name = "gradient-x-input" }
[dataset]
name = "spurious-bars"
n_train = 192
n_test = 64
image_size = 32
[training]
epochs = 1
[refiner.cosine-attention]
epochs = 1
"""
    )
    env = {**env, "CRAYON_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run(crayon("run", "--config", str(config), "--out", str(tmp_path / "out")), env=env, check=True, capture_output=True, text=True)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["method"] for row in results["rows"]] == ["original", "cosine-attention"]
    refined = results["rows"][1]["metrics"]
    assert 0 <= refined["wga"] <= refined["mga"] <= 1
    assert sum(results["annotations"].values()) == 192  # every training map judged (gradient × input maps)
