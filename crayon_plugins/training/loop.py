"""The one training loop every trainer and refiner uses."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from crayon_plugins.config import Optimisation
from crayon_plugins.data.items import Items
from crayon_plugins.errors import ConfigError, TrainingError
from crayon_plugins.model.classifier import Classifier
from crayon_plugins.training.selection import Curve, KeepBestEpoch, Selection
from crayon_plugins.utils.progress import progress_bar


class EpochObserver(Protocol):
    """What :func:`fit` tells as it trains (Lightning's callbacks): after every epoch, with the
    epoch's loss log (see :func:`log_term`), and at the end."""

    def on_epoch_end(self, epoch: int, model: nn.Module, log: dict[str, float]) -> None: ...

    def on_fit_end(self, model: nn.Module) -> None: ...


_step_terms: ContextVar[list[tuple[str, Tensor, str]] | None] = ContextVar("step_terms", default=None)


def log_term(name: str, value: Tensor, reduction: Literal["sum", "mean"] = "mean") -> None:
    """Record one term of the minibatch loss being computed, for :func:`fit`'s per-epoch log
    (Lightning's ``self.log``). ``value`` is the term as it enters the loss; ``reduction`` says how
    it gathers the minibatch's items (``"sum"`` or ``"mean"`` over them). The epoch's log holds the
    term per image: the sum over the epoch's items divided by their number. Does nothing outside
    :func:`fit`."""
    if (terms := _step_terms.get()) is not None:
        terms.append((name, value.detach().float(), reduction))


def fit(
    model: nn.Module,
    batch_loss: Callable[[Tensor, Tensor | None], Tensor],
    n: int,
    optimisation: Optimisation,
    seed: int,
    description: str,
    sample_weights: Tensor | None = None,
    parameters: list[nn.Parameter] | None = None,
    selection: Selection | None = None,
    evaluated: Classifier | None = None,
    images: Items | None = None,
    observers: Sequence[EpochObserver] = (),
) -> Curve | None:
    """Train ``model`` in place with Adam; ``batch_loss(indices, images)`` returns a minibatch's loss,
    ``images`` the minibatch's images (on CPU, streamed from ``images``) or ``None`` without them.

    Each epoch visits ``n`` items: a permutation, or, with ``sample_weights``, ``n`` draws with
    replacement in proportion to them. ``parameters`` defaults to all of the model's. With
    ``selection``, ``evaluated`` (default ``model``; the whole classifier when ``model`` is a part of
    it) is evaluated on validation after every epoch, ``model`` ends with the weights of the epoch
    the rule picks, and the :class:`Curve` is returned and kept in ``selection.curve`` (a
    :class:`~crayon_plugins.training.selection.KeepBestEpoch` observer does this). ``observers`` hear
    of every epoch's end, with its log: ``loss_per_step`` (the mean of the minibatch losses) and, per
    image, every term the loss recorded with :func:`log_term`, and of the end of training. The model
    is left in ``eval`` mode.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    augmentation = torch.Generator().manual_seed(seed + 1)
    optimiser = torch.optim.Adam(
        parameters if parameters is not None else model.parameters(),
        lr=optimisation.lr,
        weight_decay=optimisation.weight_decay,
    )
    device = next(model.parameters()).device.type
    if optimisation.amp == "fp16" and device != "cuda":
        raise ConfigError(f"{description}: amp = 'fp16' needs a CUDA device (training runs on {device}); use 'bf16' or 'none'", "training.amp")
    precision = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(optimisation.amp)
    scaler = torch.amp.GradScaler(device, enabled=optimisation.amp == "fp16")
    batches = -(-n // optimisation.batch_size)
    if selection is not None:
        observers = [KeepBestEpoch(selection, evaluated), *observers]  # the others see the kept epoch at the end
    model.train()
    with progress_bar(description, optimisation.epochs * batches) as advance:
        for epoch in range(1, optimisation.epochs + 1):
            if sample_weights is None:
                order = torch.randperm(n, generator=generator)
            else:
                order = torch.multinomial(sample_weights.double(), n, replacement=True, generator=generator)
            chunks = order.split(optimisation.batch_size)
            minibatches = images.batches(order, optimisation.batch_size, augmentation) if images is not None else ((i, None) for i in chunks)
            losses = []  # on the device: checked once per epoch, so no step waits for the GPU
            terms: dict[str, Tensor] = {}
            for indices, batch in minibatches:
                step = _step_terms.set([])
                try:
                    with torch.autocast(device, dtype=precision, enabled=precision is not None):
                        loss = batch_loss(indices, batch)
                    for name, value, reduction in _step_terms.get():
                        terms[name] = terms.get(name, 0) + (value if reduction == "sum" else value * len(indices))
                finally:
                    _step_terms.reset(step)
                losses.append(loss.detach().float().reshape(1))
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                advance()
            losses = torch.cat(losses).cpu() if losses else torch.zeros(0)
            if not torch.isfinite(losses).all():
                step = int((~torch.isfinite(losses)).nonzero()[0]) + 1
                raise TrainingError(f"{description}: the loss is {losses[step - 1].item()} at epoch {epoch}, step {step}; {_DIVERGED}")
            if bad := non_finite_weights(model):
                raise TrainingError(f"{description}: weight {bad!r} is not finite after epoch {epoch}; {_DIVERGED}")
            log = {"loss_per_step": float(losses.mean()) if len(losses) else math.nan, **{name: float(total) / n for name, total in terms.items()}}
            for observer in observers:
                observer.on_epoch_end(epoch, model, log)
    for observer in observers:
        observer.on_fit_end(model)
    model.eval()
    return selection.curve if selection is not None else None


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; a CPU tensor bound for a GPU goes through pinned memory without
    waiting for the GPU (a copy from pageable memory waits for every kernel queued before it)."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


_DIVERGED = "training diverged, and nothing of it was cached or reported. Lower the learning rate or the loss weights."


def non_finite_weights(model: nn.Module) -> str | None:
    """The name of ``model``'s first parameter or buffer holding inf or nan, or ``None``."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None
