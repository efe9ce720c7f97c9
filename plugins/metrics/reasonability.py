"""``reasonability``: GRADIA's reasonability matrix of a model on the evaluated split.

GRADIA (Gao et al., "Aligning Eyes between Humans and Deep Neural Network through Interactive
Attention Alignment", CSCW 2022) sorts images into four quadrants: is the model's explanation
reasonable (it looks at the right thing), and is its prediction accurate? Unreasonable-accurate images
are where hidden shortcuts live.
"""

from __future__ import annotations

from crayon_plugins.api import Answer, Metric, Need, Predictions, hookimpl


class ReasonabilityMatrix(Metric):
    """The four quadrants' shares of the split (``reasonability``) and counts (``reasonability_counts``).

    An image's map (for the model's prediction) is reasonable when the annotator answers *yes*,
    unreasonable when it answers *no*; *maybe* and abstentions are ``undecided``, so the four shares
    and ``undecided`` sum to 1.
    """

    needs = frozenset({Need.MAP_ANSWERS})

    def compute(self, predictions: Predictions) -> dict[str, dict[str, float]]:
        answers = predictions.map_answers
        accurate = predictions.predicted == predictions.split.labels
        masks = {
            "reasonable-accurate": (answers == Answer.YES) & accurate,
            "reasonable-inaccurate": (answers == Answer.YES) & ~accurate,
            "unreasonable-accurate": (answers == Answer.NO) & accurate,
            "unreasonable-inaccurate": (answers == Answer.NO) & ~accurate,
        }
        masks["undecided"] = (answers != Answer.YES) & (answers != Answer.NO)
        counts = {name: int(mask.sum()) for name, mask in masks.items()}
        n = max(len(answers), 1)
        return {"reasonability": {k: v / n for k, v in counts.items()}, "reasonability_counts": counts}


@hookimpl
def crayon_metrics():
    return {"reasonability": ReasonabilityMatrix}
