"""Which training items get annotated under a budget (see :class:`~crayon_plugins.config.Budget`).

Both strategies rank all items once and take a prefix, so a smaller budget's items are among a
larger one's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from crayon_plugins.config import Budget
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.model.features import SharedFeatures


def budget_size(n: int, fraction: float) -> int:
    """``round(fraction · n)``, at least one item."""
    return max(1, min(n, math.floor(fraction * n + 0.5)))


def uniform_order(n: int, seed: int) -> Tensor:
    """A seeded random order of ``n`` items."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def image_losses(model: Classifier, train: SharedFeatures, labels: Tensor) -> Tensor:
    """``(N,)`` the model's cross-entropy on each training image."""
    return F.cross_entropy(train.logits(model), labels, reduction="none")


def neuron_taylor_scores(model: Classifier, train: SharedFeatures, labels: Tensor, batch_size: int = 512) -> Tensor:
    """``(C,)`` ``|∂L/∂m_c|`` at the current mask: the first-order estimate of how much the summed
    training loss ``L`` would change if neuron ``c`` were pruned (Molchanov et al., ICLR 2017)."""
    model.eval()
    mask = model.neuron_mask.detach().clone().requires_grad_(True)
    if train.covers(model):  # the classifier sees pool(f) · m
        batches = zip(train.pooled.split(batch_size), labels.split(batch_size))
        logits = lambda pooled: model.classifier(pooled * mask)  # noqa: E731
    else:  # the backbone without a graph; only pooling and classifier see the mask
        def batches():
            for i, x in train.images.batches(batch_size=64):
                with torch.no_grad():
                    features = model.forward_features((x.to(train.device) - model.mean) / model.std)
                yield features, labels[i]  # outside no_grad: the consumer builds the mask's graph

        batches = batches()
        logits = lambda features: model.classifier(model.pool(features * mask.view(1, -1, 1, 1)))  # noqa: E731
    total = torch.zeros_like(mask)
    for inputs, target in batches:
        loss = F.cross_entropy(logits(inputs.to(train.device)), target.to(train.device), reduction="sum")
        total += torch.autograd.grad(loss, mask)[0]  # the model's own gradients stay untouched
    return total.abs().cpu()


def annotation_order(n: int, selection: str, seed: int, scores: Callable[[], Tensor]) -> Tensor:
    """All ``n`` item indices, those a budget takes first in front: a seeded random order
    (``uniform``) or by decreasing ``scores()`` (``loss-guided``; ties by index)."""
    return uniform_order(n, seed) if selection == "uniform" else torch.sort(scores(), descending=True, stable=True).indices


def selected(n: int, budget: Budget, seed: int, scores: Callable[[], Tensor], ranked: bool = False) -> Tensor:
    """Indices of the items to annotate: the first :func:`budget_size` of :func:`annotation_order`;
    all ``n`` in index order at a full budget, unless ``ranked`` (the order a page asks them in)."""
    if budget.fraction >= 1 and not ranked:
        return torch.arange(n)
    return annotation_order(n, budget.selection, seed, scores)[: budget_size(n, budget.fraction)]
