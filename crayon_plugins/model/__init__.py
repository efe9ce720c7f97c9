"""The classifier every backbone returns and what is computed from it: checkpoints, pooled features,
saliency-map arithmetic, the differentiable Grad-CAMs and neuron concepts."""

from crayon_plugins.model.classifier import ChannelMask, Classifier

__all__ = ["ChannelMask", "Classifier"]
