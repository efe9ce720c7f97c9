from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("CRAYON_PROGRESS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: one torch thread each keeps the cores busy
    # without oversubscribing them (the tiny models train barely faster on two threads than on one).
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding slow tests first, longest first (the ``slow`` marker's ``minutes``), each file's
    tests kept together and in order, so that no worker of ``make test`` starts a minutes-long test
    when the others are nearly done, and module fixtures are set up once (``make test`` passes
    ``--no-loadscope-reorder`` so that pytest-xdist keeps this order instead of putting the files
    with the most tests first)."""

    def minutes(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return -1 if marker is None else marker.kwargs.get("minutes", 0)

    longest: dict[object, float] = {}
    for item in items:
        longest[item.path] = max(longest.get(item.path, -1), minutes(item))
    items.sort(key=lambda item: longest[item.path], reverse=True)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty artefact cache."""
    monkeypatch.setenv("CRAYON_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def benchmark_cache(tmp_path_factory):
    """One artefact cache for the default benchmark's tests, shared by the xdist workers of one
    session (their temporary folders have a common parent), so the original model is trained once;
    the cache's file locks make the second worker wait for, then load, what the first computes."""
    from crayon_plugins.run.cache import ArtefactCache

    root = tmp_path_factory.getbasetemp()
    return ArtefactCache((root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "benchmark-cache")


@pytest.fixture(scope="session")
def tiny_model():
    """A random resnet10t cut after stage 2 (the default backbone): 32×32 inputs give a 4×4 feature grid, in eval mode."""
    from crayon_plugins import create_backbone

    torch.manual_seed(0)
    return create_backbone("timm", {"model": "resnet10t"}).build(2).eval()
