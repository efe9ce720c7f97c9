"""Panels of simulated annotators: ``size`` copies of a configured oracle, each with its own annotator
id and noise: with ``spread`` s, annotator i of n has the oracle's flip and abstention rates times a
factor evenly spaced in ``[1 − s, 1 + s]`` (mean factor 1). Their answers are aggregated and their
agreement measured by :mod:`crayon_plugins.annotation.panel`.
"""

from __future__ import annotations

import numpy as np
from crayon_plugins.oracles.noise import NoiseParams

from crayon_plugins.api import AnnotationSource, ConfigError
from crayon_plugins.config import Panel
from crayon_plugins.utils.moved import moved_names


def members(source: AnnotationSource, panel: Panel, where: str) -> list[AnnotationSource]:
    """The panel's annotators: ``source`` itself for a panel of one without spread, else copies of it
    with ids ``<id>-1`` … ``<id>-n`` and spread noise rates."""
    if panel.size == 1 and panel.spread == 0:
        return [source]
    if not isinstance(source.params, NoiseParams):
        raise ConfigError(f"{where}: a panel of {panel.size} needs a simulated annotator with noise options, and {type(source).__name__} has none")
    p = source.params
    factors = np.linspace(1 - panel.spread, 1 + panel.spread, panel.size) if panel.size > 1 else np.ones(1)
    return [
        type(source)(p.model_copy(update={
            "annotator": f"{p.annotator}-{i + 1}",
            "flip_rate": min(1.0, p.flip_rate * factor),
            "abstain_rate": min(1.0, p.abstain_rate * factor),
        }))
        for i, factor in enumerate(factors)
    ]


__getattr__ = moved_names(__name__, dict.fromkeys(("CATEGORIES", "aggregate", "agreement"), "crayon_plugins.annotation.panel"))
