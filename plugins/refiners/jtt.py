"""``jtt``: Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness without
Training Group Information", ICML 2021), the annotation-free baseline, as published.

Stage one trains an ERM model **from scratch** for only ``stage_one_epochs`` (the paper's early
stopping T); its training errors form the error set. Stage two trains a second model from scratch on
the training set with the error set upsampled ``upweight`` times (the public code appends the errors
``λ_up`` times to the training set, so an epoch has ``N + λ_up·|errors|`` draws). Both stages use this
refiner's optimisation options; the defaults are the run's ERM defaults, so stage two trains as long
as the original model did.

**Choosing T and λ_up on validation**, as the paper does (its sweep: T among a few early epochs,
λ_up ∈ {20, 50, 100}; its Waterbirds job uses λ_up = 100, CelebA 50; the CRAYON comparison's
``misc/training_config.md`` gives λ_up = 100 with 60 epochs at lr 5e-5, weight decay 1e-4 on
Waterbirds and λ_up = 20 with 30 epochs at lr 1e-5, weight decay 0.1 on Biased CelebA). Each of
``stage_one_epochs`` and ``upweight`` is a value or a list of values: stage one trains once, for the
largest T, and its errors are read after each listed epoch T (an ERM run stopped at T is the first T
epochs of a longer run with the same seed); stage two trains once per pair (T, λ_up), keeping within
each the epoch the run's selection rule picks (a pair whose T gives the same error set as an earlier
T's, with the same λ_up, would train the same model from the same seed: it takes that pair's scores
instead, and never wins over it). The pair kept has the best validation worst-group
accuracy of that model, ties broken by validation mean-group accuracy, then plain accuracy, and the
first pair in grid order (T, then λ_up, as listed) among pairs tied on all three; without a group
attribute on validation, or with ``search_metric = "accuracy"`` (no validation group labels used),
plain accuracy, then balanced accuracy. Single values are no search. The default grid,
T ∈ {1, 2} × λ_up ∈ {20, 100}, costs two stage-one epochs and four stage-two trainings.

The search is reported in ``context.details["search"]`` (``details.refiner.search`` of the row in
``results.json``): each pair's errors, kept epoch and validation metrics, the pair chosen and the
metrics that ranked them. The run's ``selection`` record of ``jtt`` is the kept pair's stage-two
validation curve.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from crayon_plugins.api import ORDER, Classifier, CrayonError, Optimisation, RefinementContext, Refiner, choose_epoch, fit, hookimpl, log_term, predict, to_device, validation_metrics

logger = logging.getLogger(__name__)

def upsampled_weights(errors: Tensor, upweight: float) -> Tensor:
    """Per item how often an epoch of the upsampled training set holds it: ``1 + λ_up`` for an
    error, 1 otherwise (float64)."""
    return torch.where(errors, 1.0 + upweight, 1.0).double()


def search_rule(scores: list[dict[str, float]], metric: str = "wga") -> str:
    """The run's selection rule the pairs are ranked by: ``val-wga`` when ``metric`` is ``"wga"``
    and every pair's validation has ``wga``, else ``val-accuracy`` (their metrics and tie-breakers
    are :data:`~crayon_plugins.api.ORDER`'s)."""
    return "val-wga" if metric == "wga" and scores and all("wga" in s for s in scores) else "val-accuracy"


def ranking(scores: list[dict[str, float]], metric: str = "wga") -> tuple[str, ...]:
    """The validation metrics the pairs are ranked by, in order."""
    return ORDER[search_rule(scores, metric)]


def choose_pair(scores: list[dict[str, float]], metric: str = "wga") -> int:
    """The index of the best of ``scores`` (one dict of validation metrics per pair, in grid order),
    ranked as the run's selection rule ranks epochs (:func:`~crayon_plugins.api.choose_epoch`)."""
    return choose_epoch(search_rule(scores, metric), scores) - 1


def as_grid(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ErrorsAfter:
    """An observer of :func:`fit` that reads the training errors of the model after each epoch in
    ``epochs``: the errors of an ERM model stopped there."""

    def __init__(self, epochs: set[int], context: RefinementContext) -> None:
        self.epochs, self.context = epochs, context
        self.errors: dict[int, Tensor] = {}

    def on_epoch_end(self, epoch: int, model: Classifier, log: dict[str, float]) -> None:
        if epoch in self.epochs:
            train = self.context.train
            self.errors[epoch] = predict(model, train.images, self.context.device).argmax(dim=1) != train.labels
            model.train()  # predict leaves it in eval mode; the next epoch trains as an uninterrupted run

    def on_fit_end(self, model: Classifier) -> None:
        pass


class JustTrainTwice(Refiner):
    """Two models from scratch: an early-stopped ERM one that finds the errors, and one trained with
    the errors upsampled; over a grid of (T, λ_up), the pair best on validation."""

    class Params(Optimisation):
        stage_one_epochs: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] = Field(
            default=[1, 2],
            description="T: epochs of the early-stopped ERM model; a list is searched on validation with upweight (the paper's early-stopping sweep)",
        )
        upweight: Annotated[float, Field(ge=0)] | Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = Field(
            default=[20.0, 100.0],
            description="λ_up: extra copies of each error per epoch; a list is searched on validation with stage_one_epochs "
            "(the paper sweeps 20, 50, 100; its Waterbirds job 100, CelebA 50; the CRAYON comparison 100 on Waterbirds, 20 on Biased CelebA)",
        )
        search_metric: Literal["wga", "accuracy"] = Field(
            default="wga",
            description="what chooses among several (T, λ_up): 'wga' the validation worst-group accuracy, then mean-group, then plain accuracy, "
            "as the paper tunes (plain accuracy without a group attribute); 'accuracy' plain then balanced validation accuracy, which needs no group labels",
        )

    search: dict | None = None
    """After :meth:`refine`: ``{"pairs": [...], "chosen": i, "ranked_by": [...]}``, per pair (grid
    order) its ``stage_one_epochs``, ``upweight``, ``errors`` (the size of the error set), ``epoch``
    (stage two's kept epoch, ``None`` without the run's model selection), ``same_as`` (for a pair not
    trained because an earlier pair had its error set and λ_up: that pair's index) and ``validation`` (the kept
    model's validation metrics; empty where none were measured: a single pair without the run's model
    selection, or no validation split)."""

    def train(self, context: RefinementContext, epochs: int, weights: torch.Tensor | None, description: str, select: bool, observers=()) -> Classifier:
        if context.build_model is None:
            raise CrayonError(f"refiner {self.name!r} trains from scratch, and the refinement context cannot build a model")
        model = context.build_model().to(context.device)
        train, device = context.train, context.device

        def batch_loss(indices: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
            loss = F.cross_entropy(model(to_device(images, device)), to_device(train.labels[indices], device))
            log_term("cross_entropy", loss, "mean")
            return loss

        n = len(train) if weights is None else round(float(weights.sum()))
        options = self.params.model_copy(update={"epochs": epochs})
        fit(
            model, batch_loss, n, options, context.seed, description, sample_weights=weights,
            selection=context.selection if select else None, images=train.images, observers=observers,
        )  # fmt: skip
        return model

    def stage_one_errors(self, context: RefinementContext, stops: list[int]) -> dict[int, Tensor]:
        """Per T in ``stops`` the training errors of the ERM model stopped after T epochs, from one
        run of ``max(stops)`` epochs."""
        reader = ErrorsAfter(set(stops), context)
        last = max(stops)
        self.train(context, last, None, f"{self.name} stage one (ERM, {last} epochs; errors after {', '.join(map(str, sorted(set(stops))))})", select=False, observers=[reader])
        return reader.errors

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        p = self.params
        stops, upweights = as_grid(p.stage_one_epochs), as_grid(p.upweight)
        grid = [(t, u) for t in stops for u in upweights]
        selection = context.selection
        if len(grid) > 1 and selection is None and context.val is None:
            raise CrayonError(f"refiner {self.name!r} chooses stage_one_epochs and upweight on validation, and the refinement context has no validation split; give single values")
        errors = self.stage_one_errors(context, stops)
        pairs, kept, curves = [], None, []
        for t, u in grid:
            found = errors[t]
            twin = next((i for i, (earlier, v) in enumerate(grid[: len(pairs)]) if v == u and torch.equal(errors[earlier], found)), None)
            if twin is not None:  # the same error set and λ_up train the same model (one seed): its scores, not a second training
                pairs.append({**pairs[twin], "stage_one_epochs": t, "same_as": twin})
                curves.append(curves[twin])
                logger.info("%s: T = %d, λ_up = %g: the error set of T = %d, so the model of that pair", self.name, t, u, grid[twin][0])
                continue
            description = f"{self.name} stage two (T = {t}, λ_up = {u:g}: {int(found.sum())} errors upsampled)"
            candidate = self.train(context, p.epochs, upsampled_weights(found, u), description, select=True)
            curve = selection.curve if selection is not None else None
            if curve is not None and curve.epochs:
                scores, epoch = dict(curve.epochs[curve.chosen - 1]), curve.chosen
            else:
                scores, epoch = (validation_metrics(context.val, predict(candidate, context.val.images, context.device).argmax(dim=1), context.train.group_shares()) if context.val is not None and len(grid) > 1 else {}), None
            pairs.append({"stage_one_epochs": t, "upweight": u, "errors": int(found.sum()), "epoch": epoch, "validation": scores})
            logger.info("%s: T = %d, λ_up = %g, %d errors: validation %s (epoch %s)", self.name, t, u, int(found.sum()), scores, epoch)
            curves.append(curve)
            if kept is None or choose_pair([pairs[kept[0]]["validation"], scores], p.search_metric) == 1:  # strictly better
                kept = (len(pairs) - 1, candidate)
            del candidate
        chosen = kept[0]  # choose_pair over all the pairs' scores, kept as they came so one model is held at a time
        if selection is not None:
            selection.curve = curves[chosen]  # the run records the kept model's curve, not the last trained
        context.details["search"] = {"pairs": pairs, "chosen": chosen, "ranked_by": list(ranking([pair["validation"] for pair in pairs], p.search_metric))}
        if len(grid) > 1:
            best = pairs[chosen]
            logger.info("%s: kept T = %d, λ_up = %g (validation %s)", self.name, best["stage_one_epochs"], best["upweight"], best["validation"])
        return kept[1]


@hookimpl
def crayon_refiners():
    return {"jtt": JustTrainTwice}
