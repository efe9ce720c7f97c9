"""Stage 1, load: the dataset's splits, read once per process, streamed with ``[loading]``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import Loading, default_workers
from crayon_plugins.errors import DataError, call_plugin
from crayon_plugins.run.cache import cache_key, component_key
from crayon_plugins.utils.progress import warn

if TYPE_CHECKING:
    from crayon_plugins.run.pipeline import Pipeline

_SPLITS: dict[str, ImageSet] = {}
"""Splits loaded in this process, by dataset configuration and split name (at most six)."""


def loading(pipeline: Pipeline) -> Loading:
    """The run's ``[loading]`` options, ``auto`` resolved for this machine and device."""
    options = pipeline.config.loading
    workers = default_workers() if options.num_workers == "auto" else options.num_workers
    pin = pipeline.device.type == "cuda" if options.pin_memory == "auto" else options.pin_memory
    return Loading(workers, pin)


def load(pipeline: Pipeline, split: str) -> ImageSet:
    """A split of the dataset, loaded once per process (a study's cells share it)."""
    spec = pipeline.config.dataset
    key = cache_key(dataset=component_key(pipeline.dataset, spec), split=split)
    if key not in _SPLITS:
        if len(_SPLITS) >= 6:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = call_plugin(f"dataset {spec.name!r}", pipeline.dataset.load, split)
    return _SPLITS[key].with_loading(loading(pipeline))


def check_disjoint(splits: dict[str, ImageSet]) -> None:
    """A :class:`DataError` naming the file and both splits when one image file is in two splits
    (a test image seen in training makes every number optimistic); splits held in memory have no
    files to compare."""
    seen: dict[str, str] = {}
    for name, split in splits.items():
        for path in getattr(split.images, "paths", ()):
            if (other := seen.setdefault(os.path.realpath(path), name)) != name:
                raise DataError(f"dataset: {path} is in both the {other} and the {name} split; a split's images must be its own", "dataset")


def warn_missing_groups(train: ImageSet, test: ImageSet) -> None:
    """A warning for each group (class, for a dataset without a group attribute) the training or test
    split lacks, and what follows from it."""
    grouped = train.has_groups and test.has_groups
    kind, test_consequence = ("group(s)", "WGA and MGA are taken over the groups it has") if grouped else ("class(es)", "worst-class accuracy is taken over the classes it has")
    for name, split, consequence in (("training", train, "refiners cannot learn them"), ("test", test, test_consequence)):
        if missing := split.missing_groups():
            warn(f"the {name} split has no item of {kind} {', '.join(missing)}: {consequence}")
