"""The stages of a run, in data-flow order, one module of functions each.

1. :mod:`.load` — the dataset's splits, streamed with the run's loading options;
2. :mod:`.original` — the original model (ERM, cached; or the user's checkpoint) and model selection;
3. :mod:`.explain` — its saliency maps, pooled features and neuron concepts (cached);
4. :mod:`.annotate` — the panel's answers about maps and neurons, and its drawings, under the budget;
5. :mod:`.refine` — the refinement context and each refiner;
6. :mod:`.evaluate` — every metric of a model, on the test split and any extra evaluation splits;
7. :mod:`.report` — each method's row of the results, and the observers that print and write them.

Each stage function takes the run's :class:`~crayon_plugins.run.pipeline.Pipeline` (its
configuration, built components, cache and device) and the artefacts of the stages before it, and
returns its own, so a test or a command can run one stage alone.
"""
