"""``finetune``: plain cross-entropy fine-tuning, the control every annotation-based refiner must beat.

It is :class:`~crayon_plugins.api.finetuning.FineTuning` itself: the same loop, options and defaults as
``crayon-attention`` and the other loss-based refiners, without their annotation terms, so a
refiner's lift over ``original`` counts only as far as it exceeds this one's (an original model that
is not trained to convergence improves with more training alone).
"""

from __future__ import annotations

from crayon_plugins.api import FineTuning, hookimpl


class FineTune(FineTuning):
    """Fine-tune the whole model with summed cross-entropy on the training split, ignoring annotations."""


@hookimpl
def crayon_refiners():
    return {"finetune": FineTune}
