"""``masktune``: MaskTune (Asgari, Khani, Khani, Hosseini & Maleki, "MaskTune: Mitigating Spurious
Correlations by Forcing to Explore", NeurIPS 2022; public code aliasgharkhani/Masktune), the
annotation-free baseline, as its public code computes it.

The original (ERM) model's most salient regions of every training image are blacked out, and a copy
of the original model is fine-tuned on the masked images for one epoch, so it must find other
evidence for the label. The public code (``src/methods/base_method.py``, ``mask_data``;
``src/utils/masking.py``; grad-cam 1.3.7's ``XGradCAM`` and ``scale_cam_image``) computes, per image:

1. XGrad-CAM of the original model (eval mode) on its last feature map (ResNet-50's ``layer4``)
   for its **predicted** class (``targets=None``): with ``A`` the feature map and ``z_t`` the
   predicted logit, ``w_c = Σ_hw (∂z_t/∂A_c · A_c) / (Σ_hw A_c + 1e-7)`` and
   ``S = ReLU(Σ_c w_c·A_c)`` (:func:`xgradcam`);
2. ``S ← (S − min S) / (max(S − min S) + 1e-7)``, bilinearly resized to the image size, and
   min–max scaled again the same way (:func:`heat_maps`);
3. over the pixels where ``S > 0`` only, their mean ``μ`` and (population) standard deviation
   ``σ``; pixels with ``S > μ + 2σ`` are masked (set to 0, black), the others kept (an image with no
   positive pixel keeps everything) (:func:`keep_masks`);

then trains on ``mean_batch CE(model(x ⊙ keep), y)``, the public code's ``nn.CrossEntropyLoss()``.
By Cantelli's inequality at most a fifth of an image's positive pixels are masked.

The CRAYON paper's settings (poloclub/crayon, ``misc/training_config.md``): Waterbirds, Adam lr 1e-4,
weight decay 1e-4, batches of 128, 1 epoch; Biased CelebA, the original model with Adam lr 1e-9,
weight decay 1e-4, batches of 64, 1 epoch. The defaults here are the Waterbirds row's but for the
batch size, which is ``finetune``'s 64 (the embedded benchmark's 64-px images, a small timm backbone).

Where this differs from the public code:

- the framework's loop trains with Adam (the public scripts use SGD; the CRAYON table, Adam) and
  reads the masked images without the random crop and flip the public code applies after masking,
  as every refiner here trains on the un-augmented training split;
- the public code masks with the best ERM checkpoint and fine-tunes the last one; here both are the
  original model;
- it masks at the original files' resolution (the 224-px mask resized by nearest neighbour to the
  file, then the training transform); here the mask is made and applied at the split's image size;
- ``saliency = "run"`` replaces step 1 by the run's interpreter's maps of the original model
  (``context.original_maps``, for the true labels), so any interpreter plugin can choose the regions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Batch, Classifier, FineTuning, RefinementContext, hookimpl, log_term, rows


def xgradcam(model: Classifier, images: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(maps (B, h, w), targets (B,))``: ``ReLU(Σ_c w_c·A_c)`` on ``model``'s last feature map
    ``A``, with ``w_c = Σ_hw (∂z_t/∂A_c · A_c) / (Σ_hw A_c + 1e-7)`` (grad-cam's ``XGradCAM``),
    detached, for ``targets`` or, when ``None``, the predicted classes (what grad-cam does without
    targets). Run it on a model in eval mode."""
    with torch.no_grad():
        features = model.features(images)
    with torch.enable_grad():
        features.requires_grad_(True)  # the gradient reaches the feature map only: the body is not differentiated
        logits = model.head(features)
        if targets is None:
            targets = logits.detach().argmax(dim=1)
        (grads,) = torch.autograd.grad(logits.float().gather(1, targets[:, None]).sum(), features)
    activations = features.detach().float()
    weights = (grads.float() * activations).sum(dim=(2, 3)) / (activations.sum(dim=(2, 3)) + 1e-7)
    return F.relu((weights[:, :, None, None] * activations).sum(dim=1)), targets


def _scale(maps: Tensor) -> Tensor:
    """grad-cam's ``scale_cam_image`` without the resize: ``(S − min S) / (max(S − min S) + 1e-7)`` per map."""
    shifted = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return shifted / (shifted.amax(dim=(-2, -1), keepdim=True) + 1e-7)


def heat_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, h, w)`` non-negative maps → ``(B, H, W)`` heat maps as grad-cam returns them: min–max
    scaled, bilinearly resized to ``size`` (OpenCV's ``INTER_LINEAR``: half-pixel centres, as
    ``align_corners=False``), min–max scaled again."""
    resized = F.interpolate(_scale(maps.float())[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return _scale(resized)


def keep_masks(heat: Tensor) -> Tensor:
    """``(B, H, W)`` bool, ``False`` where a heat map exceeds ``μ + 2σ``, the mean and population
    standard deviation of its positive pixels (MaskTune's ``mask_heatmap_using_threshold``); a map
    with no positive pixel keeps every pixel."""
    positive = heat > 0
    count = positive.sum(dim=(-2, -1), keepdim=True)
    mean = (heat * positive).sum(dim=(-2, -1), keepdim=True) / count.clamp(min=1)
    std = (((heat - mean) ** 2) * positive).sum(dim=(-2, -1), keepdim=True).div(count.clamp(min=1)).sqrt()
    return ~((heat > mean + 2 * std) & (count > 0))


def masked(images: Tensor, maps: Tensor) -> Tensor:
    """``images (B, 3, H, W)`` with the most salient pixels of ``maps (B, h, w)`` set to 0."""
    return images * keep_masks(heat_maps(maps, tuple(images.shape[-2:])))[:, None].to(images.dtype)


class MaskTune(FineTuning):
    """Fine-tune a copy of the original model for one epoch on the training images with the original
    model's most salient regions blacked out (:func:`masked`), on mean cross-entropy."""

    class Params(FineTuning.Params):
        epochs: int = Field(default=1, gt=0, description="epochs of fine-tuning on the masked images (MaskTune: 1)")
        lr: float = Field(default=1e-4, gt=0, description="Adam's learning rate (CRAYON's Waterbirds setting)")
        weight_decay: float = Field(default=1e-4, ge=0, description="Adam's weight decay (CRAYON's Waterbirds setting)")
        batch_size: int = Field(default=64, gt=0, description="items per minibatch (finetune's; CRAYON: 128 on Waterbirds, 64 on Biased CelebA)")
        saliency: Literal["xgradcam", "run"] = Field(
            default="xgradcam",
            description=(
                "the maps that choose the masked regions: 'xgradcam', the public code's XGrad-CAM of the original model "
                "on its last feature map for its predicted class; 'run', the run's interpreter's maps of the original "
                "model for the true labels"
            ),
        )
        mask_batch_size: int = Field(default=128, gt=0, description="images per batch when computing the masks (the public code's --masking_batch)")

    def prepare(self, model: Classifier, context: RefinementContext) -> Tensor:
        """The original model's ``(N, h, w)`` maps of the training split, on CPU."""
        if self.params.saliency == "run":
            return context.original_maps
        was_training = model.training
        model.eval()
        try:
            chunks = [xgradcam(model, images.to(context.device))[0].cpu() for _, images in context.train.images.batches(batch_size=self.params.mask_batch_size)]
        finally:
            model.train(was_training)
        return torch.cat(chunks)

    def loss(self, model: Classifier, batch: Batch, maps: Tensor) -> Tensor:
        loss = F.cross_entropy(model(masked(batch.images, rows(maps, batch))), batch.labels)
        log_term("cross_entropy", loss, "mean")
        return loss


@hookimpl
def crayon_refiners():
    return {"masktune": MaskTune}
