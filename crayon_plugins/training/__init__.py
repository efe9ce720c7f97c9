"""Training: the one loop every trainer uses, model selection on validation, and CRAYON's energy loss."""

from crayon_plugins.training.loop import fit, non_finite_weights, to_device
from crayon_plugins.training.selection import Curve, Selection, choose_epoch
from crayon_plugins.utils.moved import moved_names

__all__ = ["Curve", "Selection", "choose_epoch", "fit", "non_finite_weights", "to_device"]

__getattr__ = moved_names(__name__, {"predict": "crayon_plugins.model.features"})
