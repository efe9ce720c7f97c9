"""``group-balanced``: the reference upper bound, fine-tuning on the *true* group labels.

Every group is drawn equally often (sampling with replacement, weights ∝ 1 / group size), as in the
group-balanced ERM baselines of the group-robustness literature (e.g. Idrissi et al., "Simple data
balancing achieves competitive worst-group-accuracy", CLeaR 2022). It needs no annotations, but it
does need group labels, which the annotation-based methods exist to avoid.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field

from crayon_plugins.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.model import Classifier
from crayon_plugins.training import fit


class GroupBalanced(Refiner):
    """Fine-tune the whole model with cross-entropy on group-balanced minibatches."""

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-3, gt=0)

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        refined = copy.deepcopy(model).to(context.device)
        train, device = context.train, context.device
        groups = train.groups
        weights = 1.0 / torch.bincount(groups).double()[groups]

        def batch_loss(indices):
            logits = refined(train.images[indices].to(device))
            return F.cross_entropy(logits, train.labels[indices].to(device))

        fit(refined, batch_loss, len(train), self.params, context.seed, "refine group-balanced", sample_weights=weights)
        return refined


@hookimpl
def crayon_refiners():
    return {"group-balanced": GroupBalanced}
