"""Cost of crayon-pruning's classifier retraining against one crayon-attention refinement.

The target: on the default benchmark, retraining the classifier on the cached penultimate
features (feature extraction excluded) costs under 10 % of a crayon-attention refinement of the same
original model on the same data. Both are measured here, in one process, one after the other; the
original model, maps and concepts come from the cache (or are computed first, untimed).

Run with ``make bench`` (or ``python benchmarks/pruning_cost.py``).
"""

from __future__ import annotations

import time

from crayon_plugins.plugins.refiners.crayon_pruning import prune

from crayon_plugins import Pipeline, RunConfig
from crayon_plugins.model.features import predict
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.run.stages.refine import refinement_context
from crayon_plugins.utils.progress import console

TARGET = 0.10


def seconds(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def main() -> None:
    pipeline = Pipeline.from_config(RunConfig(refiners=["crayon-pruning", "crayon-attention"]))
    train = pipeline.dataset.load("train")
    model = original_model(pipeline, train).model
    context = refinement_context(pipeline, model, train)
    pruning, attention = pipeline.refiners["crayon-pruning"], pipeline.refiners["crayon-attention"]

    pruned = prune(model, context.neuron_answers).to(context.device)
    extract, features = seconds(lambda: predict(pruned, train.images, context.device, penultimate=True))
    retrain, _ = seconds(lambda: pruning.retrain_classifier(pruned, features, train.labels, context.seed))
    refine, _ = seconds(lambda: attention.refine(model, context))

    epochs = (pruning.params.epochs, attention.params.epochs)
    console.print(f"default benchmark: {len(train)} training images, {int((pruned.neuron_mask == 0).sum())} neurons pruned")
    console.print(f"  crayon-pruning feature extraction (once)      {extract:7.2f} s")
    console.print(f"  crayon-pruning classifier retraining ({epochs[0]} ep)  {retrain:7.2f} s")
    console.print(f"  crayon-attention refinement ({epochs[1]} ep)          {refine:7.2f} s")
    ratio = retrain / refine
    verdict = "[green]meets[/]" if ratio < TARGET else "[red]misses[/]"
    console.print(f"retraining / crayon-attention = {ratio:.4f} ({verdict} the target < {TARGET})")
    console.print(f"(feature extraction + retraining) / crayon-attention = {(extract + retrain) / refine:.4f}")


if __name__ == "__main__":
    main()
