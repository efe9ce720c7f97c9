"""The one training loop every trainer and refiner uses, and batched prediction."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .config import Optimisation
from .model import Classifier
from .progress import progress_bar


def fit(
    model: nn.Module,
    batch_loss: Callable[[Tensor], Tensor],
    n: int,
    optimisation: Optimisation,
    seed: int,
    description: str,
    sample_weights: Tensor | None = None,
    parameters: list[nn.Parameter] | None = None,
) -> None:
    """Train ``model`` in place with Adam; ``batch_loss(indices)`` returns a minibatch's loss.

    Each epoch visits ``n`` items: a permutation, or, with ``sample_weights``, ``n`` draws with
    replacement in proportion to them. ``parameters`` defaults to all of the model's. The model is
    left in ``eval`` mode.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(
        parameters if parameters is not None else model.parameters(),
        lr=optimisation.lr,
        weight_decay=optimisation.weight_decay,
    )
    batches = -(-n // optimisation.batch_size)
    model.train()
    with progress_bar(description, optimisation.epochs * batches) as advance:
        for _ in range(optimisation.epochs):
            if sample_weights is None:
                order = torch.randperm(n, generator=generator)
            else:
                order = torch.multinomial(sample_weights.double(), n, replacement=True, generator=generator)
            for indices in order.split(optimisation.batch_size):
                loss = batch_loss(indices)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                advance()
    model.eval()


@torch.no_grad()
def predict(
    model: Classifier, images: Tensor, device: torch.device, batch_size: int = 256, penultimate: bool = False
) -> Tensor:
    """``(N, num_classes)`` logits of ``model`` (in eval mode) on CPU; with ``penultimate``, the
    ``(N, D)`` pooled features its classifier sees instead."""
    model.eval()
    output = (lambda x: model.pool(model.features(x))) if penultimate else model
    return torch.cat([output(batch.to(device)).cpu() for batch in images.split(batch_size)])
