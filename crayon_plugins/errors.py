"""User-facing errors: each names the field, file or plugin at fault.

The CLI turns a :class:`CrayonError` into a one-paragraph message and exit status 2; every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CrayonError(Exception):
    """An error the user can fix (configuration, plugin set-up, input files)."""


class ConfigError(CrayonError):
    """Invalid configuration; the message names the source and the field."""


class PluginError(CrayonError):
    """A plugin failed to load, registered a name twice, or broke its contract."""


class UnknownComponentError(CrayonError):
    """A component name that no plugin registered; the message lists those that exist."""
