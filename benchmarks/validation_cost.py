"""Cost of evaluating the validation split after every epoch, against the same training without it.

The target: validation and model selection slow a run down by less than 15 %. On the
default benchmark, the original model's ERM training and each of ``crayon-attention`` (the whole
model fine-tuned) and ``crayon-pruning`` (the classifier retrained on cached features) are timed
with and without per-epoch validation, in one process, one after the other; the original model,
maps and features come from the cache (or are computed first, untimed). The target applies to the
run, the three trainers together; each trainer's own ratio is printed too (a trainer of a fraction
of a second, like the classifier retraining, pays a few milliseconds per epoch, a large share of
very little).

Run with ``make bench`` (or ``python benchmarks/validation_cost.py``).
"""

from __future__ import annotations

import dataclasses
import time

import torch.nn.functional as F

from crayon_plugins import Pipeline, RunConfig
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import new_model, original_model, selection
from crayon_plugins.run.stages.refine import refinement_context
from crayon_plugins.training.loop import fit
from crayon_plugins.utils.progress import console

TARGET = 0.15


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    pipeline = Pipeline.from_config(RunConfig(refiners=["crayon-attention", "crayon-pruning"]))
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    context = refinement_context(pipeline, model, train)
    blind = dataclasses.replace(context, selection=None)

    def erm(selection) -> None:
        fresh = new_model(pipeline, len(train.class_names))

        def batch_loss(indices, _):  # the images come from the split itself
            return F.cross_entropy(fresh(train.images[indices].to(pipeline.device)), train.labels[indices].to(pipeline.device))

        fit(fresh, batch_loss, len(train), pipeline.config.training, pipeline.config.seed, "ERM", selection=selection)

    rows = [("original (ERM)", lambda: erm(None), lambda: erm(selection(pipeline)))]
    for name, refiner in pipeline.refiners.items():
        rows.append((name, lambda r=refiner: r.refine(model, blind), lambda r=refiner: r.refine(model, context)))
    totals = [0.0, 0.0]
    for name, without, with_validation in rows:
        base, validated = seconds(without), seconds(with_validation)
        totals = [totals[0] + base, totals[1] + validated]
        console.print(f"  {name:<18} without validation {base:7.2f} s, with {validated:7.2f} s: {100 * (validated / base - 1):+.1f} % ({validated - base:+.2f} s)")
    overhead = totals[1] / totals[0] - 1
    verdict = "[green]meets[/]" if overhead < TARGET else "[red]misses[/]"
    console.print(f"the run: {totals[0]:.2f} s without validation, {totals[1]:.2f} s with: {100 * overhead:+.1f} % ({verdict} the target < {100 * TARGET:.0f} %)")


if __name__ == "__main__":
    main()
