"""User-facing errors: each names the field, file or plugin at fault.

The CLI turns a :class:`CrayonError` into a one-paragraph message and exit status 2; every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class CrayonError(Exception):
    """An error the user can fix (configuration, plugin set-up, input files).

    ``field``: the configuration field at fault, when there is one (``"refiner.crayon-attention"``),
    so a caller that knows the file can point at its line.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def within(self, where: str) -> CrayonError:
        """The same error, its message prefixed with ``where`` (a file, a study cell)."""
        try:
            return type(self)(f"{where}: {self}", self.field)
        except TypeError:  # a plugin's subclass with another constructor
            return CrayonError(f"{where}: {self}", self.field)


class ConfigError(CrayonError):
    """Invalid configuration; the message names the source and the field."""


class TrainingError(CrayonError):
    """Training diverged: a non-finite loss or weight; the message names the trainer, epoch and step."""


class PluginError(CrayonError):
    """A plugin failed to load, registered a name twice, or broke its contract."""


class RunIncomplete(CrayonError):
    """Some refiners of a run were refused or failed and the others ran: ``results`` holds every
    row, each refused one saying why (``details["refused"]``)."""

    def __init__(self, message: str, field: str | None = None, *, results: Any = None) -> None:
        super().__init__(message, field)
        self.results = results


class UnknownComponentError(CrayonError):
    """A component name that no plugin registered; the message lists those that exist."""


class DataError(CrayonError):
    """A dataset's files are missing or malformed; the message names the file (and row)."""


def call_plugin(who: str, method, *args):
    """``method(*args)``; an error that is not a :class:`CrayonError` becomes a :class:`PluginError`
    naming ``who`` (the configuration field and component: ``"concepts 'top-patches'"``)."""
    try:
        return method(*args)
    except CrayonError:
        raise
    except Exception as error:
        raise PluginError(f"{who} failed: {type(error).__name__}: {error}") from error
