"""Writing files so that a reader, or a process killed mid-write, never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from crayon_plugins.errors import ConfigError

TASK_MARK = ".crayon-task"
"""The file that marks an annotation task folder, which a dataset's fingerprint leaves out (its
answers change as people answer)."""


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to a temporary file beside ``path``, fsync it, then rename
    it over ``path`` (creating the folder); temporary files of earlier, killed writes of ``path``
    are removed (one process writes a given file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for orphan in path.parent.glob(f"{path.name}.*.tmp"):  # left by a write that was killed
        orphan.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f"{path.name}.", suffix=".tmp", delete=False) as handle:
        handle.write(content.encode() if isinstance(content, str) else content)
        handle.flush()
        os.fsync(handle.fileno())
    publish(Path(handle.name), path)


def publish(written: Path, path: Path) -> None:
    """Rename the finished temporary file ``written`` over ``path``, with the permissions the
    user's umask gives new files (temporary files are private)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(written, 0o666 & ~mask)
    os.replace(written, path)


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of the ``what`` file at ``path`` (``"configuration"``, ``"study
    specification"``, …); a :class:`CrayonError` naming it if it is missing, a folder, unreadable
    or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what} file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied reading the {what} file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: the {what} file is not UTF-8 text (byte {error.start})") from None


def writable_folder(path: Path, option: str) -> Path:
    """Check, before any work and without creating anything, that the output folder ``path`` is a
    folder (or can be created as one) that this process may write in; a :class:`ConfigError`
    naming ``option`` otherwise."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option}: {existing} is a file, so {path} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: cannot write in {existing} (permission denied)")
    return path
