"""On-disk cache of expensive artefacts (trained models, maps), keyed by what determines them.

An entry is ``ROOT/KIND/KEY.pt``, written atomically under a lock per entry. Reading one never
fails a run: an entry that does not load, or whose content does not fit what the run expects, is
damage, warned about once and recomputed; a failed write (disk full) is warned about and the run
carries on with the artefact in memory. Nothing non-finite is ever stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
import timm
import torch
from filelock import FileLock, Timeout

from crayon_plugins.api.components import Component
from crayon_plugins.config import ComponentSpec
from crayon_plugins.errors import CrayonError
from crayon_plugins.utils.files import publish
from crayon_plugins.utils.progress import console, warn

CACHE_FORMAT = 3
"""Bump when the meaning of cached artefacts changes, so older entries are ignored."""

T = TypeVar("T")
Check = Callable[[Any], str | None]
"""Checks a loaded entry's content: ``None`` if it fits, else what is wrong (a shape, a key)."""

_warned: set[tuple[Path, str]] = set()


def default_cache_dir() -> Path:
    """``$CRAYON_CACHE_DIR``, else the user's cache folder (``~/.cache/crayon-plugins`` on Linux)."""
    return Path(os.environ.get("CRAYON_CACHE_DIR") or platformdirs.user_cache_dir("crayon-plugins"))


def component_key(component: Component, spec: ComponentSpec) -> dict:
    """A configured component's part of a cache key: its name and validated options."""
    return {"name": spec.name, "params": component.params.model_dump(mode="json")}


def cache_key(**parts: Any) -> str:
    """A stable hex key of JSON-serialisable ``parts``, the cache format and the torch and timm
    versions (another version may compute different numbers)."""
    versions = {"format": CACHE_FORMAT, "torch": torch.__version__, "timm": timm.__version__}
    text = json.dumps({**versions, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def holds_non_finite(value: Any) -> bool:
    """Whether a floating-point tensor anywhere in nested ``value`` holds inf or nan."""
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return any(holds_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_non_finite(v) for v in value)
    return False


def _warn_once(path: Path, text: str) -> None:
    if (path, text) not in _warned:
        _warned.add((path, text))
        warn(text)


class ArtefactCache:
    """Tensors and state dicts stored as ``ROOT/KIND/KEY.pt``, written atomically."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str, check: Check | None = None) -> Any | None:
        """The stored artefact, or ``None`` if absent, unreadable or (``check``) not what the run
        expects: a damaged entry is recomputed."""
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            value = torch.load(path, weights_only=True)
        except Exception as error:  # noqa: BLE001 - a damaged cache entry is a miss, not a failure
            _warn_once(path, f"the cached {kind} entry {path} is damaged ({type(error).__name__}); recomputing it")
            return None
        problem = check(value) if check is not None else None
        if problem is None and holds_non_finite(value):
            problem = "it holds inf or nan"
        if problem is not None:
            _warn_once(path, f"the cached {kind} entry {path} does not fit this run ({problem}); recomputing it")
            return None
        return value

    def save(self, kind: str, key: str, value: Any) -> bool:
        """Store ``value``; ``False`` (with a warning) if it could not be written."""
        if holds_non_finite(value):
            raise CrayonError(f"refusing to cache a {kind} artefact that holds inf or nan (entry {key})")
        path = self.path(kind, key)
        handle = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f"{key}.", suffix=".tmp", delete=False) as handle:
                torch.save(value, handle)
            publish(Path(handle.name), path)
            return True
        except OSError as error:
            if handle is not None:
                Path(handle.name).unlink(missing_ok=True)
            _warn_once(path, f"could not write the cache entry {path} ({error.strerror or error}); carrying on with the {kind} in memory")
            return False

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], T], check: Check | None = None) -> tuple[T, bool]:
        """``(artefact, was_cached)``; computes and stores it on a miss. A lock file per entry makes
        a concurrent process (a study's other cells) wait for the artefact instead of recomputing it;
        while it waits it says which process holds the lock and since when. A lock whose process is
        gone is released by the operating system, so the entry is taken over."""
        value = self.load(kind, key, check)
        if value is not None:
            return value, True
        path = self.path(kind, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            _warn_once(path, f"cannot use the cache folder {path.parent} ({error.strerror or error}); computing the {kind} without it")
            return compute(), False
        with _locked(path):
            value = self.load(kind, key, check)
            if value is not None:
                return value, True
            for orphan in path.parent.glob(f"{key}.*.tmp"):  # left by a killed write of this entry
                orphan.unlink(missing_ok=True)
            value = compute()
            self.save(kind, key, value)
        return value, False


class _locked:
    """The entry's lock, announcing who holds it when it is not free at once."""

    def __init__(self, path: Path) -> None:
        self.lock = FileLock(path.with_suffix(".lock"))
        self.owner = path.with_suffix(".owner")

    def __enter__(self) -> None:
        try:
            self.lock.acquire(timeout=2)
        except Timeout:
            try:
                holder = json.loads(self.owner.read_text())
                who = f"process {holder['pid']} on {holder['host']} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder['since']))}"
            except (OSError, ValueError, KeyError, TypeError):
                who = "another process"
            console.print(f"waiting for {who}, which is computing {self.owner.with_suffix('.pt')} (a stopped process holds its lock until it continues or ends)", highlight=False, soft_wrap=True, markup=False)
            self.lock.acquire()
        try:
            self.owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        except OSError:
            pass  # who holds the lock is a courtesy; the lock itself is what counts

    def __exit__(self, *exc: object) -> None:
        self.owner.unlink(missing_ok=True)
        self.lock.release()
