"""On-disk cache of expensive artefacts (trained models, maps), keyed by what determines them."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
import torch
from filelock import FileLock

from .progress import console

CACHE_FORMAT = 3
"""Bump when the meaning of cached artefacts changes, so older entries are ignored."""

T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$CRAYON_CACHE_DIR``, else the user's cache folder (``~/.cache/crayon-plugins`` on Linux)."""
    return Path(os.environ.get("CRAYON_CACHE_DIR") or platformdirs.user_cache_dir("crayon-plugins"))


def cache_key(**parts: Any) -> str:
    """A stable hex key of JSON-serialisable ``parts`` (and the cache format)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ArtifactCache:
    """Tensors and state dicts stored as ``ROOT/KIND/KEY.pt``, written atomically."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> Any | None:
        """The stored artefact, or ``None`` if absent or unreadable (a damaged file is recomputed)."""
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # noqa: BLE001 - a damaged cache entry is a miss, not a failure
            console.print(f"[yellow]warning:[/] ignoring unreadable cache file {path}: {error}")
            return None

    def save(self, kind: str, key: str, value: Any) -> None:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            torch.save(value, handle)
        os.replace(handle.name, path)

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
        """``(artefact, was_cached)``; computes and stores it on a miss. A lock file per entry makes
        a concurrent process (a study's other cells) wait for the artefact instead of recomputing it."""
        value = self.load(kind, key)
        if value is not None:
            return value, True
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_suffix(".lock")):
            value = self.load(kind, key)
            if value is not None:
                return value, True
            value = compute()
            self.save(kind, key, value)
        return value, False
