"""The auxiliary bias-capturing model that ``softcon`` and ``flac`` share (this module registers nothing).

Both methods first train an auxiliary model that is meant to learn **only** the shortcut, and read its
pooled features of every training image. The CRAYON repository's ``misc/training_config.md`` trains
"an auxiliary BagNet18 model with Adam optimizer with a learning rate of 1e-3 for 20 epochs" for
SoftCon and uses "the same BagNet18 auxiliary model" for FLAC (Waterbirds, Biased CelebA and
Backgrounds Challenge alike). The public code of both methods trains it the same way
(grayhong/bias-contrastive-learning and gsarridis/FLAC, ``get_imagenet_bias_features.py``): plain
mean cross-entropy on the labels, Adam at lr 1e-3 without weight decay, minibatches of 128, then the
pooled features of every training image in ``eval`` mode, saved once and looked up by index.

BagNet's pretrained weights would have to be downloaded, and timm has no BagNet, so
:class:`LocalFeatureNet` rebuilds the layout of the ``bagnet18`` in CRAYON's
``src/model/cnn_softcon.py`` (the same as grayhong's ``debias/networks/imagenet_models.py``) from timm
layers (``timm.layers.ConvNormAct``: convolution, batch norm, ReLU), a quarter as wide (channels 16,
32, 64, 128 instead of 64 … 512), trained from scratch on the training split:

- stem: a 3×3 convolution without padding, batch norm, ReLU (``bagnet18`` has a 1×1 convolution
  before it, with nothing between the two: their composition is one 3×3 convolution of the image, so
  the stem here is that convolution);
- four stages of two residual blocks (convolution k×k with the stage's stride and no padding, batch
  norm, ReLU, 1×1 convolution, batch norm, plus a shortcut, ReLU), strides 2, 2, 2, 1; only the first
  block of the first stage has k = 3, every other convolution is 1×1 (``kernel3 = [1, 0, 0, 0]``);
- global average pooling (the pooled features), a linear head.

**Receptive field: 5 × 5 pixels.** A unit's receptive field grows by ``(k − 1) × jump`` at each k×k
convolution, where ``jump`` is the product of the strides before it: the 3×3 stem convolution makes
1 + 2·1 = 3, the first block's 3×3 stride-2 convolution 3 + 2·1 = 5 (its jump becomes 2), and every
later convolution is 1×1, so it only subsamples (strides add no field). Each feature of the last
map therefore sees one 5 × 5 patch (:func:`receptive_field` computes it;
``tests/plugins/test_softcon.py`` measures it through the gradient) whatever the image size, as the
``bagnet18`` above, whose field is 5 pixels too (its ``rf=43`` argument is unused). The patch is a
larger share of a 64-px image (8 % of the side) than of the papers' 224-px ones (2 %).

Why this captures the shortcuts BagNet captures: the logits are a linear function of the **average**
of per-patch features, a bag of local features in the sense of Brendel & Bethge (ICLR 2019). Such a
model can use what a small patch shows, colour and fine texture (the colour of Waterbirds' land or
water background, of the embedded benchmark's corner square), but not shape, outline or layout,
which span many patches (a bird's silhouette; the orientation of the embedded benchmark's 3 px wide,
29 px long, low-contrast bar is only a weak local signal in the pixel noise). Trained on a split
where the shortcut agrees with the label on most images, it predicts through the shortcut, and its
pooled features group the images by it, which is what both losses read. Measured on the embedded
benchmark (seed 0, the default 3 epochs): on the group-balanced test split it predicts the corner
square's colour on every one of the 2,000 images, so it is right on the images whose colour agrees
with the label and wrong on all the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from timm.layers import ConvNormAct
from torch import Tensor, nn

from crayon_plugins.api import CrayonError, Items, Optimisation, RefinementContext, fit, log_term, to_device

WIDTHS = (16, 32, 64, 128)
"""Channels of the four stages (``bagnet18``'s 64, 128, 256, 512 divided by four)."""

STRIDES = (2, 2, 2, 1)
KERNEL3 = (1, 0, 0, 0)
"""Per stage, how many of its first blocks have a 3×3 convolution (``bagnet18``'s ``kernel3``)."""

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""ImageNet's normalisation, as the public code's transforms apply it."""

BIAS_BATCH_SIZE = 128
"""The public code's minibatch for the auxiliary model."""


class LocalBlock(nn.Module):
    """``bagnet18``'s residual block: k×k convolution (``stride``, no padding), batch norm, ReLU, 1×1
    convolution, batch norm, plus the shortcut (a strided 1×1 convolution and batch norm when the shape
    changes; cropped at the bottom and right when the k×k convolution shrank the map), ReLU."""

    def __init__(self, channels_in: int, channels: int, stride: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels_in, channels, kernel, stride=stride, padding=0)
        self.conv2 = ConvNormAct(channels, channels, 1, apply_act=False)
        self.shortcut = ConvNormAct(channels_in, channels, 1, stride=stride, apply_act=False) if stride != 1 or channels_in != channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        identity = self.shortcut(x)
        h, w = out.shape[-2:]
        return F.relu(out + identity[..., :h, :w])


class LocalFeatureNet(nn.Module):
    """A narrow ``bagnet18`` (see the module docstring): ``forward(images in [0, 1]) → (logits, pooled
    features (B, 128))``; every pooled feature is the mean over the last map's cells, each of which sees
    a 5 × 5-pixel patch."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.stem = ConvNormAct(3, widths[0], 3, padding=0)
        blocks, channels = [], widths[0]
        for width, stride, kernel3 in zip(widths, STRIDES, KERNEL3, strict=True):
            for i in range(2):
                blocks.append(LocalBlock(channels, width, stride if i == 0 else 1, 3 if i < kernel3 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)

    def feature_map(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` → the last ``(B, C, h, w)`` map of local features."""
        return self.blocks(self.stem((images - self.mean) / self.std))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.feature_map(images).mean(dim=(2, 3))
        return self.fc(pooled), pooled


def receptive_field(model: LocalFeatureNet) -> int:
    """The side in pixels of the patch one unit of ``model``'s last map sees: ``1 + Σ (k − 1) × jump``
    over the convolutions of its main path in order, ``jump`` the product of the strides before each
    (the shortcuts are 1×1 convolutions of the same stride, and add nothing)."""
    convs = [model.stem.conv]
    for block in model.blocks:
        convs += [block.conv1.conv, block.conv2.conv]
    field, jump = 1, 1
    for conv in convs:
        field += (conv.kernel_size[0] - 1) * jump
        jump *= conv.stride[0]
    return field


class BiasModelOptions(BaseModel):
    """The auxiliary model's options, shared by ``softcon`` and ``flac``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bias_epochs: PositiveInt = Field(default=3, description="epochs of the auxiliary bias-capturing model, trained from scratch (the CRAYON configuration's BagNet18: 20)")
    bias_lr: float = Field(default=1e-3, gt=0, description="Adam learning rate of the auxiliary model (the papers' 1e-3, no weight decay)")


def train_bias_model(context: RefinementContext, options: BiasModelOptions, description: str) -> LocalFeatureNet:
    """A :class:`LocalFeatureNet` seeded by ``context.seed`` and trained from scratch on
    ``context.train`` with mean cross-entropy (Adam, ``bias_lr``, ``bias_epochs``, minibatches of
    128), left in ``eval`` mode on ``context.device``."""
    train, device = context.train, context.device
    if len(train) < 2:
        raise CrayonError(f"{description}: the auxiliary model needs at least two training images, and the split has {len(train)}")
    torch.manual_seed(context.seed)
    model = LocalFeatureNet(len(train.class_names)).to(device)

    def batch_loss(indices: Tensor, images: Tensor) -> Tensor:
        logits, _ = model(to_device(images, device))
        loss = F.cross_entropy(logits, to_device(train.labels[indices], device))
        log_term("bias_cross_entropy", loss, "mean")
        return loss

    schedule = Optimisation(epochs=options.bias_epochs, lr=options.bias_lr, weight_decay=0.0, batch_size=BIAS_BATCH_SIZE)
    fit(model, batch_loss, len(train), schedule, context.seed, description, images=train.images)
    return model.eval()


def bias_features(model: LocalFeatureNet, images: Items, device: torch.device, batch_size: int = 256) -> Tensor:
    """``(N, D)`` float32 pooled features of ``images`` (in order, on the CPU), the model in ``eval``
    mode, as the public code saves them once before the main training."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(to_device(batch, device))[1].float().cpu() for _, batch in images.batches(batch_size=batch_size)])
