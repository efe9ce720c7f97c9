"""Panels of annotators, people or oracles: their answers aggregated per item and their agreement.

Aggregation and agreement work on any :class:`~crayon_plugins.annotation.records.Annotations` with
several answers per item; *maybe* is a category like *yes* and *no*.

Libraries: `crowd-kit <https://crowd-kit.readthedocs.io>`_ (majority vote, Dawid–Skene EM),
scikit-learn (Cohen's κ), statsmodels (Fleiss' κ), ``krippendorff`` (Krippendorff's α)."""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from crayon_plugins.annotation.records import CODES, Annotations, Answer
from crayon_plugins.config import Panel
from crayon_plugins.errors import ConfigError

if TYPE_CHECKING:
    from crayon_plugins.api.components import AnnotationSource


def _frame(annotations: Annotations):
    import pandas as pd  # crowd-kit's input format; imported on first use (crowd-kit takes ~2 s to import)

    return pd.DataFrame({"task": annotations.item_ids, "worker": annotations.annotators, "label": annotations.answers.numpy()})


def aggregate(annotations: Annotations, method: str) -> Annotations:
    """One answer per item, in order of first appearance, from annotator ``"panel:<method>"``.

    ``"majority"``: the most frequent answer, *maybe* on a tie (crowd-kit's ``MajorityVote`` would
    break ties toward the lowest code, *no*). ``"dawid-skene"``: crowd-kit's ``DawidSkene`` EM, which
    weighs each annotator by an estimated confusion matrix. Items with a single answer keep it.
    """
    order = list(dict.fromkeys(annotations.item_ids))
    if len(order) == len(annotations.item_ids):
        return Annotations(annotations.item_ids, annotations.answers, (f"panel:{method}",) * len(order))
    frame = _frame(annotations)
    with warnings.catch_warnings():  # crowd-kit 1.4 uses pandas keywords that pandas 3 deprecates
        warnings.filterwarnings("ignore", module="crowdkit")
        labels = _aggregated_labels(frame, method)
    answers = torch.tensor(labels.reindex(order).to_numpy(dtype=np.int64))
    return Annotations(tuple(order), answers, (f"panel:{method}",) * len(order))


def _aggregated_labels(frame, method: str):
    from crowdkit.aggregation import DawidSkene, MajorityVote

    if method == "majority":
        probas = MajorityVote().fit(frame).probas_
        labels = probas.idxmax(axis=1)
        tied = (probas.eq(probas.max(axis=1), axis=0)).sum(axis=1) > 1
        labels[tied] = int(Answer.MAYBE)
    elif method == "dawid-skene":
        labels = DawidSkene(n_iter=100).fit_predict(frame)
    else:
        raise ConfigError(f"panel.aggregation: unknown method {method!r} (majority or dawid-skene)")
    return labels


def agreement(annotations: Annotations) -> dict[str, float]:
    """``cohen_kappa`` (mean over pairs of annotators, on the items both answered), ``fleiss_kappa``
    (items every annotator answered) and ``krippendorff_alpha`` (all answers), nominal over yes / no /
    maybe. NaN with fewer than two annotators, or where a statistic is undefined (all answers alike)."""
    nan = {"cohen_kappa": float("nan"), "fleiss_kappa": float("nan"), "krippendorff_alpha": float("nan")}
    annotators = list(dict.fromkeys(annotations.annotators))
    if len(annotators) < 2:
        return nan
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    items = list(dict.fromkeys(annotations.item_ids))
    rater, item = {a: i for i, a in enumerate(annotators)}, {t: i for i, t in enumerate(items)}
    matrix = np.full((len(annotators), len(items)), np.nan)
    for task, who, answer in zip(annotations.item_ids, annotations.annotators, annotations.answers.tolist()):
        matrix[rater[who], item[task]] = answer
    if len(np.unique(matrix[~np.isnan(matrix)])) < 2:
        return nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kappas = []
        for a, b in itertools.combinations(range(len(annotators)), 2):
            both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
            if both.any():
                kappas.append(cohen_kappa_score(matrix[a, both].astype(int), matrix[b, both].astype(int), labels=list(CODES)))
        complete = matrix[:, ~np.isnan(matrix).any(axis=0)].T.astype(int)
        counts, _ = aggregate_raters(complete, n_cat=len(CODES)) if len(complete) else (None, None)
        return {
            "cohen_kappa": float(np.nanmean(kappas)) if kappas else float("nan"),
            "fleiss_kappa": float(fleiss_kappa(counts)) if counts is not None else float("nan"),
            "krippendorff_alpha": float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal", value_domain=list(CODES))),
        }


def members(source: AnnotationSource, panel: Panel, where: str) -> list[AnnotationSource]:
    """The annotators of the configured ``panel`` of ``source`` (:meth:`AnnotationSource.panel`);
    errors name the configuration field ``where``."""
    try:
        return source.panel(panel.size, panel.spread)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}", where) from None
