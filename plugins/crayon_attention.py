"""``crayon-attention``: fine-tune the whole model with CRAYON's energy loss.

CRAYON: "Interpretability-Guided Model Correction with Yes/No Annotations" (arXiv 2410.22312). The
loss is :func:`crayon_plugins.energy.crayon_attention_loss` on the current model's differentiable
Grad-CAM against the original model's cached maps.
"""

from __future__ import annotations

import copy

from typing import ClassVar

from pydantic import Field

from crayon_plugins.components import DifferentiableInterpreter, RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.energy import crayon_attention_loss
from crayon_plugins.errors import ConfigError
from crayon_plugins.factory import create_interpreter
from crayon_plugins.hookspecs import hookimpl
from crayon_plugins.model import Classifier
from crayon_plugins.training import fit


class CrayonAttention(Refiner):
    """Cross-entropy ``+ α/n_no·ΣL_no + β/n_yes·ΣL_yes`` per minibatch (see :mod:`crayon_plugins.energy`).

    The paper's α and β (Waterbirds 1e7 / 2e5) belong to its unnormalised maps and ResNet-50; the
    defaults here are calibrated on the embedded benchmark, where the summed cross-entropy of a
    minibatch of 64 is of order 1–10.
    """

    needs = frozenset({"map-answers"})
    name: ClassVar[str] = "crayon-attention"
    """Registered name, used in errors and progress bars."""

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        weight_decay: float = Field(default=1e-4, ge=0)
        alpha: float = Field(default=100.0, ge=0, description="weight of L_no (answers 'no')")
        beta: float = Field(default=2.0, ge=0, description="weight of L_yes (answers 'yes')")
        interpreter: str = Field(default="gradcam", description="a differentiable interpreter")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.interpreter = create_interpreter(self.params.interpreter, where=f"refiner.{self.name}.interpreter")
        if not isinstance(self.interpreter, DifferentiableInterpreter):
            raise ConfigError(
                f"refiner.{self.name}.interpreter: {self.params.interpreter!r} is not differentiable; "
                "the energy loss must train through the maps (use 'gradcam')"
            )

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        refined = copy.deepcopy(model).to(context.device)
        train, device, p = context.train, context.device, self.params
        original_maps = context.maps_for(self.interpreter, model)

        def batch_loss(indices):
            images, labels = train.images[indices].to(device), train.labels[indices].to(device)
            current, logits = self.interpreter.explain(refined, images, labels)
            original = original_maps[indices].to(device)
            answers = context.map_answers[indices].to(device)
            return crayon_attention_loss(logits, labels, current, original, answers, p.alpha, p.beta)

        fit(refined, batch_loss, len(train), p, context.seed, f"refine {self.name}")
        return refined


@hookimpl
def crayon_refiners():
    return {"crayon-attention": CrayonAttention}
