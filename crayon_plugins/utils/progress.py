"""Progress bars on stderr (rich), switched off with ``CRAYON_PROGRESS=0`` or :func:`set_enabled`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
_enabled = os.environ.get("CRAYON_PROGRESS", "1") != "0"


def set_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


@contextmanager
def silenced() -> Iterator[None]:
    """No progress bars inside the block; the setting before it is restored after."""
    before = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(before)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` steps; yields ``advance(steps=1)``."""
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not _enabled,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda steps=1: progress.advance(task, steps)


def warn(text: str) -> None:
    """``warning: text`` on stderr, in yellow on a terminal, never read as markup."""
    console.print(f"warning: {text}", style="yellow", markup=False, highlight=False, soft_wrap=True)
