"""The original model's pooled features of a split, computed once and shared.

Refiners that leave the backbone's weights alone (``crayon-pruning`` masks neurons and retrains the
classifier) and the evaluation of their models then run only the classifier on these features
instead of the whole network: a study's cells share one extraction through the cache. What is kept
per image is the ``(C,)`` vector the classifier sees before the neuron mask, not the ``(C, h, w)``
feature map (for a ResNet-50 at 224 px, 2,048 floats instead of 100,352), which is exact when the
backbone's pooling works channel by channel (:func:`pools_channelwise`); any other model runs from
the images.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from crayon_plugins.data.items import Items
from crayon_plugins.model.classifier import Classifier


def backbone_digest(model: Classifier) -> str:
    """A digest of every weight and buffer except the neuron mask and the classifier (also where a
    whole timm model holds it under its own name): two models with the same digest compute the same
    feature maps before the mask."""
    classifier = {t.data_ptr() for t in model.classifier.state_dict().values()}
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        if not name.startswith(("feature_map.", "classifier.")) and tensor.data_ptr() not in classifier:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def pools_channelwise(model: Classifier) -> bool:
    """Whether ``model.pool`` commutes with pruning: ``pool(f · m) = pool(f) · m`` for every 0/1
    channel mask ``m`` (global average or max pooling do; a norm after the pooling does not).
    Checked on a random feature map."""
    channels = model.neuron_mask.numel()
    features = torch.randn(2, channels, 3, 3, generator=torch.Generator().manual_seed(0)).to(model.mean.device)
    mask = (torch.arange(channels, device=features.device) % 2).float().view(1, -1, 1, 1)
    was_training = model.training
    model.eval()
    try:
        pooled = model.pool(features)
        return pooled.shape == (2, channels) and torch.allclose(model.pool(features * mask), pooled * mask.flatten(1), atol=1e-5)
    except RuntimeError:
        return False
    finally:
        model.train(was_training)


@torch.no_grad()
def pooled_features(model: Classifier, images: Items, device: torch.device, batch_size: int = 256) -> Tensor:
    """``(N, C)`` pooled feature maps of ``model`` before its neuron mask, on CPU."""
    model.eval()
    return torch.cat(
        [model.pool(model.forward_features((batch.to(device, non_blocking=True) - model.mean) / model.std)).cpu() for _, batch in images.batches(batch_size=batch_size)]
    )


class SharedFeatures:
    """``pooled``: the features (pooled, before the mask) of ``images`` under a backbone with digest
    ``digest``, or ``None`` where the backbone's pooling is not channel-wise. A model with that
    backbone is run from them; any other model runs from the images."""

    def __init__(self, images: Items, pooled: Tensor | None, digest: str, device: torch.device) -> None:
        self.images, self.pooled, self.digest, self.device = images, pooled, digest, device

    def covers(self, model: Classifier) -> bool:
        """Whether :attr:`pooled` holds ``model``'s features."""
        return self.pooled is not None and backbone_digest(model) == self.digest

    @torch.no_grad()
    def penultimate(self, model: Classifier) -> Tensor:
        """``(N, D)`` pooled features ``model``'s classifier sees (pruned neurons zero), on CPU."""
        if not self.covers(model):
            return predict(model, self.images, self.device, penultimate=True)
        return self.pooled * model.neuron_mask.cpu()

    @torch.no_grad()
    def logits(self, model: Classifier, batch_size: int = 4096) -> Tensor:
        """``(N, num_classes)`` logits of ``model``, on CPU."""
        if not self.covers(model):
            return predict(model, self.images, self.device)
        model.eval()
        mask = model.neuron_mask
        return torch.cat([model.classifier(f.to(self.device) * mask).cpu() for f in self.pooled.split(batch_size)])


@torch.no_grad()
def predict(
    model: Classifier, images: Items, device: torch.device, batch_size: int = 256, penultimate: bool = False
) -> Tensor:
    """``(N, num_classes)`` logits of ``model`` (in eval mode) on CPU; with ``penultimate``, the
    ``(N, D)`` pooled features its classifier sees instead."""
    model.eval()
    output = (lambda x: model.pool(model.features(x))) if penultimate else model
    return torch.cat([output(batch.to(device, non_blocking=True)).cpu() for _, batch in images.batches(batch_size=batch_size)])
