"""The original model's last feature maps of a split, computed once and shared.

Refiners that leave the backbone's weights alone (``crayon-pruning`` masks neurons and retrains the
classifier) and the evaluation of their models then run only the head on these features instead of
the whole network: a study's cells share one extraction through the cache.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from .model import Classifier
from .training import predict


def backbone_digest(model: Classifier) -> str:
    """A digest of every weight and buffer except the neuron mask and the classifier: two models
    with the same digest compute the same feature maps before the mask."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        if not name.startswith(("feature_map.", "classifier.")):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def feature_maps(model: Classifier, images: Tensor, device: torch.device, batch_size: int = 256) -> Tensor:
    """``(N, C, h, w)`` feature maps of ``model`` before its neuron mask, on CPU."""
    model.eval()
    return torch.cat([model.forward_features((batch.to(device) - model.mean) / model.std).cpu() for batch in images.split(batch_size)])


class SharedFeatures:
    """``features``: the feature maps (before the mask) of ``images`` under a backbone with digest
    ``digest``. A model with that backbone is run from them; any other model runs from the images."""

    def __init__(self, images: Tensor, features: Tensor, digest: str, device: torch.device) -> None:
        self.images, self.features, self.digest, self.device = images, features, digest, device

    def covers(self, model: Classifier) -> bool:
        """Whether ``model``'s backbone computed :attr:`features`."""
        return backbone_digest(model) == self.digest

    @torch.no_grad()
    def penultimate(self, model: Classifier, batch_size: int = 1024) -> Tensor:
        """``(N, D)`` pooled features ``model``'s classifier sees (pruned neurons zero), on CPU."""
        if not self.covers(model):
            return predict(model, self.images, self.device, penultimate=True)
        model.eval()
        return torch.cat([model.pool(model.feature_map(f.to(self.device))).cpu() for f in self.features.split(batch_size)])

    @torch.no_grad()
    def logits(self, model: Classifier, batch_size: int = 1024) -> Tensor:
        """``(N, num_classes)`` logits of ``model``, on CPU."""
        if not self.covers(model):
            return predict(model, self.images, self.device)
        model.eval()
        return torch.cat([model.head(model.feature_map(f.to(self.device))).cpu() for f in self.features.split(batch_size)])
