"""Studies: one run configuration over a grid of annotation budgets, noise, panels, refiners and
seeds (:mod:`.spec`), run in parallel and resumably (:mod:`.runner`), and reported (:mod:`.report`)."""
