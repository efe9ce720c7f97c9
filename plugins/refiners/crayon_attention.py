"""``crayon-attention``: fine-tune the whole model with CRAYON's energy loss.

CRAYON: "Effective Guidance for Model Attention with Simple Yes-no Annotations" (arXiv 2410.22312). The
loss is the summed cross-entropy plus :func:`crayon_plugins.training.energy.attention_terms` on the current model's differentiable
Grad-CAM against the original model's cached maps, as the public code computes it
(``src/solver/solver_waterbirds.py``): summed cross-entropy, α and β divided by the numbers of *no*
and *yes* answers in the whole annotation set.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Answer, Batch, Classifier, ConfigError, DifferentiableInterpreter, FineTuning, Need, RefinementContext, attention_parts, hookimpl, log_term, rows
from crayon_plugins.factory import create_interpreter


@dataclass(frozen=True)
class Guidance:
    """What the energy loss needs besides the minibatch: the original maps and answers of every
    training item, and the whole annotation set's counts of *no* and *yes*."""

    original_maps: Tensor
    answers: Tensor
    n_no: int
    n_yes: int


class CrayonAttention(FineTuning):
    """Summed cross-entropy ``+ α/N_no·ΣL_no + β/N_yes·ΣL_yes`` per minibatch (:mod:`crayon_plugins.training.energy`).

    The paper's α and β (Waterbirds 1e7 / 2e5, 10 epochs at lr 5e-5) belong to ResNet-50 at 224 px;
    the defaults here are calibrated on the embedded benchmark (``docs/data-and-models.md``, "The embedded benchmark").
    Options besides α, β and the interpreter are ``finetune``'s, with the same defaults.
    """

    needs = frozenset({Need.MAP_ANSWERS})

    class Params(FineTuning.Params):
        alpha: float = Field(default=5000.0, ge=0, description="α, the weight of L_no (answers 'no'), divided by N_no")
        beta: float = Field(default=100.0, ge=0, description="β, the weight of L_yes (answers 'yes'), divided by N_yes")
        interpreter: str = Field(default="gradcam", description="a differentiable interpreter")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.interpreter = create_interpreter(self.params.interpreter, where=f"refiner.{self.name}.interpreter")
        if not isinstance(self.interpreter, DifferentiableInterpreter):
            raise ConfigError(
                f"refiner.{self.name}.interpreter: {self.params.interpreter!r} is not differentiable; "
                "the energy loss must train through the maps (use 'gradcam')"
            )

    def prepare(self, model: Classifier, context: RefinementContext) -> Guidance:
        answers = context.map_answers
        n_no, n_yes = int((answers == Answer.NO).sum()), int((answers == Answer.YES).sum())
        return Guidance(context.maps_for(self.interpreter, model), answers, n_no, n_yes)

    def loss(self, model: Classifier, batch: Batch, prepared: Guidance) -> Tensor:
        current, logits = self.interpreter.explain(model, batch.images, batch.labels)
        p = self.params
        parts = attention_parts(current, rows(prepared.original_maps, batch), rows(prepared.answers, batch), p.alpha, p.beta, prepared.n_no, prepared.n_yes)
        total = current.new_zeros(())
        for name, part in parts.items():
            log_term(name, part, "sum")
            total = total + part
        return self.prediction_loss(logits, batch) + total


@hookimpl
def crayon_refiners():
    return {"crayon-attention": CrayonAttention}
