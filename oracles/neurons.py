"""Simulated annotators of neurons: is the concept a neuron responds to relevant to the label?

Both judge the concepts of :class:`~crayon_plugins.model.concepts.NeuronConcepts` and answer *yes* (relevant)
or *no* (irrelevant) per neuron; then :func:`~crayon_plugins.oracles.noise.apply_noise` abstains
(*maybe*) and flips with the same seeded model as the saliency oracle. Real annotators of the CRAYON
paper found 49.5 % of a ResNet-50's neurons relevant on Waterbirds, 6.0 % on Biased CelebA and
80.1 % on the Backgrounds Challenge (:data:`crayon_plugins.annotation.paper_mix.REAL_ANNOTATORS`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from crayon_plugins.oracles.noise import NoiseParams, SimulatedAnnotator, apply_noise
from pydantic import Field
from sklearn.metrics import roc_auc_score
from torch import Tensor

from crayon_plugins.api import Annotations, Answer, CrayonError, Need, NeuronsToJudge, Question, grid_masks, hookimpl


class NeuronOracle(SimulatedAnnotator, ABC):
    """Noise-free :meth:`truth` per neuron, then the shared noise model, one annotator id per answer."""

    @abstractmethod
    def truth(self, items: NeuronsToJudge) -> Tensor:
        """``(C,)`` noise-free :class:`~crayon_plugins.annotation.records.Answer` codes, *yes* or *no*."""

    def annotate_neurons(self, items: NeuronsToJudge) -> Annotations:
        ids = items.concepts.neuron_ids
        answers = apply_noise(self.truth(items), ids, self.params, Question.NEURONS)
        return Annotations(ids, answers, (self.params.annotator,) * len(ids))


class NeuronMaskOracle(NeuronOracle):
    """``neuron-mask``: relevant when most of the neuron's top patches are centred on the object.

    A patch is on the object when the object mask touches its arg-max feature cell (the cell the
    patch is centred on, the same cells the saliency oracle counts); the neuron is relevant when the
    share of its ``k`` patches on the object is at least ``relevant_above``. Needs object masks.
    """

    needs = frozenset({Need.MASKS})

    class Params(NoiseParams):
        annotator: str = "neuron-mask"
        relevant_above: float = Field(default=0.5, ge=0, le=1, description="share of patches on the object")

    def on_object(self, items: NeuronsToJudge) -> Tensor:
        """``(C,)`` share of each neuron's top patches whose arg-max cell the object touches."""
        if items.train.masks is None:
            raise CrayonError("neuron-mask needs object masks, and this dataset has none; use neuron-metadata")
        concepts = items.concepts
        shown = concepts.top_images.unique()  # sorted; only these images' masks are read
        cells = grid_masks(items.train.masks[shown], concepts.grid)  # (len(shown), h, w)
        rows, cols = concepts.cells[..., 0], concepts.cells[..., 1]
        return cells[torch.searchsorted(shown, concepts.top_images), rows, cols].mean(dim=1)

    def truth(self, items: NeuronsToJudge) -> Tensor:
        relevant = self.on_object(items) >= self.params.relevant_above
        return torch.where(relevant, int(Answer.YES), int(Answer.NO)).to(torch.int64)


def separation(activations: np.ndarray, attribute: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(C,)`` how well each neuron's activation separates ``attribute``: the largest ``|AUC − 0.5|``
    over its values (one against the rest; 0 when it takes one value), with sample ``weights``."""
    best = np.zeros(activations.shape[1])
    values = np.unique(attribute)
    for value in values if len(values) > 2 else values[1:]:
        positive = attribute == value
        for c in range(activations.shape[1]):
            auc = roc_auc_score(positive, activations[:, c], sample_weight=weights)
            best[c] = max(best[c], abs(auc - 0.5))
    return best


class NeuronMetadataOracle(NeuronOracle):
    """``neuron-metadata``: irrelevant when the neuron separates the spurious attribute better than
    the label. Uses group metadata only, so it works on datasets without masks.

    Per neuron, its maximum activation on each training image scores the label and, separately, the
    spurious attribute by ROC AUC; the separation is ``|AUC − 0.5|`` (one value against the rest for
    more than two). With ``balance_groups`` each image weighs ``1 / |its group|``, so in a training set
    where label and attribute agree 95 % of the time a neuron that sees only the attribute scores 0.5
    on the label rather than 0.95; unweighted, the two separations of every neuron nearly coincide.
    """

    needs = frozenset({Need.GROUPS})

    class Params(NoiseParams):
        annotator: str = "neuron-metadata"
        balance_groups: bool = Field(default=True, description="weigh images by 1 / group size")

    def separations(self, items: NeuronsToJudge) -> tuple[np.ndarray, np.ndarray]:
        """``(label separation, spurious separation)``, each ``(C,)``."""
        train = items.train
        groups = train.groups.numpy()
        weights = 1.0 / np.bincount(groups)[groups] if self.params.balance_groups else np.ones(len(groups))
        activations = items.concepts.activations.double().numpy()
        return separation(activations, train.labels.numpy(), weights), separation(activations, train.spurious.numpy(), weights)

    def truth(self, items: NeuronsToJudge) -> Tensor:
        label, spurious = self.separations(items)
        return torch.from_numpy(np.where(spurious > label, int(Answer.NO), int(Answer.YES))).to(torch.int64)


@hookimpl
def crayon_annotation_sources():
    return {"neuron-mask": NeuronMaskOracle, "neuron-metadata": NeuronMetadataOracle}
