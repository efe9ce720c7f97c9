from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("CRAYON_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty artefact cache."""
    monkeypatch.setenv("CRAYON_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_model():
    """A random resnet10t cut after stage 2 (the default backbone): 32×32 inputs give a 4×4 feature grid, in eval mode."""
    from crayon_plugins import create_backbone

    torch.manual_seed(0)
    return create_backbone("timm", {"model": "resnet10t"}).build(2).eval()
