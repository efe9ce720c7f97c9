"""``crayon-pruning`` and ``crayon-attention+pruning``: prune the neurons annotators found irrelevant.

CRAYON: "Effective Guidance for Model Attention with Simple Yes-no Annotations" (arXiv 2410.22312).
CRAYON-Pruning masks every neuron (channel of the last feature map) answered *irrelevant* to zero and
retrains only the last layer on the now fixed features; CRAYON-Attention+Pruning applies the same mask
and then fine-tunes the whole model with CRAYON-Attention's energy loss.
"""

from __future__ import annotations

import copy

import torch.nn.functional as F
from crayon_plugins.plugins.refiners.crayon_attention import CrayonAttention
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Answer, Classifier, CrayonError, Need, Optimisation, Params, RefinementContext, Refiner, Selection, fit, hookimpl, log_term, to_device


def prune(model: Classifier, neuron_answers: Tensor) -> Classifier:
    """A copy of ``model`` whose neurons answered *no* (irrelevant) are masked to zero.

    Neurons answered *yes* or *maybe*, or not annotated, keep their mask (pruned ones stay pruned).
    The mask is a buffer of ``model.feature_map``, so it is saved and loaded with the model.
    """
    if neuron_answers.shape != model.neuron_mask.shape:
        raise CrayonError(f"{len(neuron_answers)} neuron answers for a model with {len(model.neuron_mask)} neurons")
    pruned = copy.deepcopy(model)
    pruned.neuron_mask[neuron_answers.to(pruned.neuron_mask.device) == Answer.NO] = 0
    return pruned


class ClassifierTraining(Optimisation):
    """How the last layer is retrained; the paper retrains for 10 epochs."""

    epochs: int = Field(default=10, gt=0)
    lr: float = Field(default=1e-3, gt=0)


class PruningParams(Params):
    max_pruned: float = Field(default=0.9, gt=0, le=1, description="refuse to prune a larger share of the neurons")


def neuron_answers(context: RefinementContext, refiner: str, max_pruned: float) -> Tensor:
    """The neuron answers to prune by; a :class:`CrayonError` if they would prune more than
    ``max_pruned`` of the neurons (a model left near chance is not a result to report)."""
    neurons = context.require_neurons(refiner)
    irrelevant, total = int((neurons.answers == Answer.NO).sum()), len(neurons.answers)
    if irrelevant > max_pruned * total:
        raise CrayonError(
            f"refiner {refiner!r} would prune {irrelevant} of {total} neurons ({100 * irrelevant / total:.0f}%), more than "
            f"max_pruned = {max_pruned:g}: the neuron annotator {neurons.annotator} called almost every concept irrelevant. "
            f"Look at the concept sheets (crayon concepts --out DIR) and the annotator's thresholds; "
            f"[refiner.{refiner}] max_pruned = 1 prunes anyway"
        )
    return neurons.answers


class CrayonPruning(Refiner):
    """Prune the irrelevant neurons, then retrain only ``model.classifier`` on the fixed features.

    The pruned model's penultimate features (pooled, pruned neurons zero) come from the original
    model's shared pooled features (:meth:`RefinementContext.penultimate`), and the classifier trains on that tensor with mean
    cross-entropy, starting from its original weights. The paper retrains for 10 epochs.
    """

    needs = frozenset({Need.NEURON_ANSWERS})

    class Params(ClassifierTraining, PruningParams):
        pass

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        return self.retrained(prune(model, neuron_answers(context, self.name, self.params.max_pruned)), context)

    def retrained(self, model: Classifier, context: RefinementContext) -> Classifier:
        """``model`` (a copy the caller owns) with its classifier retrained on its fixed features."""
        model = model.to(context.device)
        features = context.penultimate(model)
        self.retrain_classifier(model, features, context.train.labels, context.seed, context.selection)
        return model

    def retrain_classifier(self, model: Classifier, features: Tensor, labels: Tensor, seed: int, selection: Selection | None = None) -> None:
        """Train ``model.classifier`` in place on ``(N, D)`` penultimate ``features``."""
        device = next(model.classifier.parameters()).device
        features, labels = features.to(device), labels.to(device)

        def batch_loss(indices: Tensor, _: None) -> Tensor:
            on_device = to_device(indices, device)
            loss = F.cross_entropy(model.classifier(features[on_device]), labels[on_device])
            log_term("cross_entropy", loss, "mean")
            return loss

        fit(model.classifier, batch_loss, len(features), self.params, seed, f"retrain classifier ({self.name})", selection=selection, evaluated=model)


class RetrainClassifier(CrayonPruning):
    """``retrain-classifier``: the control of ``crayon-pruning``, the same classifier retraining with
    nothing pruned. Run it beside ``crayon-pruning``: retraining the last layer on fixed features can
    by itself lift worst-group accuracy, and only the rest of the lift is the pruning's."""

    needs = frozenset()
    Params = ClassifierTraining

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        return self.retrained(copy.deepcopy(model), context)


class CrayonAttentionPruning(CrayonAttention):
    """Prune the irrelevant neurons, then fine-tune the whole pruned model with the energy loss.

    The mask stays in the forward pass while fine-tuning, and a pruned channel's feature map is zero,
    so its Grad-CAM term ``w_c · A_c`` vanishes: the mask applies to Grad-CAM's channel weights too.
    Options are ``crayon-attention``'s.
    """

    needs = frozenset({Need.MAP_ANSWERS, Need.NEURON_ANSWERS})

    class Params(CrayonAttention.Params, PruningParams):
        pass

    def start(self, model: Classifier, context: RefinementContext) -> Classifier:
        return prune(model, neuron_answers(context, self.name, self.params.max_pruned))


@hookimpl
def crayon_refiners():
    return {
        "crayon-pruning": CrayonPruning,
        "crayon-attention+pruning": CrayonAttentionPruning,
        "retrain-classifier": RetrainClassifier,
    }
