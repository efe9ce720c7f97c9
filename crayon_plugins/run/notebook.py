"""The run from Python: ``crayon_plugins.run(config, **overrides)`` (what ``crayon run`` does, in a
notebook or a script)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crayon_plugins.config import RunConfig, apply_overrides, load_config, parse_config
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.run.results import Results


def run(config: RunConfig | Mapping[str, Any] | str | Path | None = None, /, *, out: str | Path | None = None, cache: str | Path | None = None, **overrides: Any) -> Results:
    """Run the pipeline and return its :class:`~crayon_plugins.run.results.Results`, whose
    ``models`` hold every method's model::

        results = crayon_plugins.run("run.toml", training={"epochs": 1}, **{"refiner.crayon-attention.epochs": 2})
        results.table()                           # the printed table (a rich Table)
        results.models["crayon-attention"]        # the refined nn.Module, in eval mode

    ``config``: a TOML file, a :class:`~crayon_plugins.config.RunConfig`, a dict of the file's keys,
    or ``None`` for the defaults. ``overrides``: keyword options, dotted keys as a dict's
    (``**{"training.epochs": 1}``) or sections as dicts (``training={"epochs": 1}``), validated like
    the file (an unknown key is an error naming it). With ``out`` the run writes what ``crayon run``
    writes there (``results.json``, ``training.csv``, figures, ``models/``); ``cache``: the artefact
    cache's folder (default: the user cache)."""
    if isinstance(config, RunConfig):
        resolved = parse_config(apply_overrides(config.model_dump(mode="json", exclude_unset=True), overrides)) if overrides else config
    elif isinstance(config, Mapping):
        resolved = parse_config(apply_overrides(dict(config), overrides))
    else:
        resolved = load_config(config, overrides)
    pipeline = Pipeline.from_config(resolved, cache=ArtefactCache(cache) if cache is not None else ArtefactCache())
    return pipeline.run(out)
