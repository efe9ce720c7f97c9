"""``gradia``: attention alignment weighted by each image's reasonability quadrant.

GRADIA: Gao et al., "Aligning Eyes between Humans and Deep Neural Network through Interactive
Attention Alignment" (CSCW 2022). Every default below is the public code's (YuyangGao/GRADIA,
``GRADIA.py``):

- the (prediction, attention) weights per quadrant, set in its ``ImageFolderWithMapsAndWeights``:
  reasonable-accurate (1, 0), unreasonable-accurate (0.4, 1.6), reasonable-inaccurate (0.8, 0.2),
  unreasonable-inaccurate (1, 1); an image without a judgement or without a drawn map keeps (1, 0);
- the loss, ``mean_batch(w_pred·CE) + λ · mean over images with w_att > 0 of w_att·L1``, the L1 a
  mean over the feature grid, with λ = 1 (its ``--attention_weight`` is never applied);
- its Grad-CAM (``get_attention_map``) for the true label: channel weights from a gradient hook, so
  constants (no ``create_graph``), no ReLU, min–max normalised per image
  (:class:`~crayon_plugins.model.gradcam.GradiaGradCam`);
- where that Grad-CAM is computed (``model_train_with_map``): the model is in train mode for the
  epoch; the cross-entropy takes the logits of one forward pass of the whole minibatch, and each
  image with ``w_att > 0`` is then explained **on its own**, a batch of one, still in train mode, so
  batch normalisation normalises it by its own statistics (and updates the running statistics once
  per explained image). That is ``gradcam = "per-image"``, the default; ``gradcam = "batched"``
  explains the whole minibatch in the same forward pass as the cross-entropy (several times faster;
  the same whenever an image's outputs do not depend on its batch-mates, i.e. without batch norm in
  train mode);
- the human map (``resize_attention_label``): the drawing resized to the grid by area
  (``cv2.INTER_AREA``), blurred with ``cv2.GaussianBlur(map, (3, 3), 0)``, whose kernel for σ = 0 at
  size 3 is ``[¼, ½, ¼]`` per axis, borders ``BORDER_REFLECT_101`` (:func:`opencv_blur`), divided by
  its maximum.

The reasonability judgement GRADIA weighs by is made on the original model's map for the class it
**predicts** (GRADIA's interface showed ``GradCam.__call__``'s map, which explains the argmax): the
refiner declares ``"predicted-map-answers"``, and the run asks the annotators about those maps (the
label's map wherever the prediction is right, so only misclassified images differ from the question
other refiners ask).

Known differences: the public code quantises the resized and the blurred map to ``uint8`` (steps of
1/255 of a fully drawn cell); here they stay floats.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.map_guided import Drawings, MapGuided
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Answer, Batch, Classifier, GradiaGradCam, Need, RefinementContext, hookimpl, log_term, normalise_maps, predict, rows

Pair = tuple[float, float]


def quadrant_weights(answers: Tensor, accurate: Tensor, weights: dict[str, Pair]) -> tuple[Tensor, Tensor]:
    """``(prediction weight, attention weight)`` per image, each ``(N,)``, from each image's
    :class:`~crayon_plugins.annotation.records.Answer` code and whether the original model got it right.

    ``weights`` maps ``"reasonable-accurate"``, ``"unreasonable-accurate"``,
    ``"reasonable-inaccurate"`` and ``"unreasonable-inaccurate"`` to a pair; reasonable means an
    explicit *yes*, unreasonable an explicit *no*; any other code (*maybe*, not annotated) gets (1, 0).
    """
    w_pred, w_att = torch.ones(len(answers)), torch.zeros(len(answers))
    for judged, name in ((Answer.YES, "reasonable"), (Answer.NO, "unreasonable")):
        for right, outcome in ((True, "accurate"), (False, "inaccurate")):
            members = (answers == judged) & (accurate == right)
            w_pred[members], w_att[members] = weights[f"{name}-{outcome}"]
    return w_pred, w_att


OPENCV_KERNEL = (0.25, 0.5, 0.25)
"""``cv2.getGaussianKernel(3, 0)``: OpenCV's fixed kernel for size 3 when σ ≤ 0 (not the σ = 0.8
Gaussian its formula would give, ``[0.228, 0.543, 0.228]``)."""


def opencv_blur(maps: Tensor) -> Tensor:
    """``(N, h, w)`` maps → each as ``cv2.GaussianBlur(map, (3, 3), 0)`` blurs it: the separable
    kernel ``[¼, ½, ¼]`` along each axis, the border ``BORDER_REFLECT_101`` (``[b, a, b, c, …]``:
    mirrored without repeating the edge cell; an axis one cell long is left as it is, as OpenCV's
    border rule maps every outside index to that cell)."""
    side, centre, _ = OPENCV_KERNEL
    out = maps[:, None].float()
    for dim, pad in ((-1, (1, 1, 0, 0)), (-2, (0, 0, 1, 1))):
        size = out.shape[dim]
        padded = F.pad(out, pad, mode="reflect" if size >= 2 else "replicate")
        out = side * padded.narrow(dim, 0, size) + centre * padded.narrow(dim, 1, size) + side * padded.narrow(dim, 2, size)
    return out[:, 0]


def human_maps(regions: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(N, H, W)`` bool drawings → ``(N, h, w)`` maps as GRADIA makes them: area-resized to the
    grid, blurred as ``cv2.GaussianBlur(map, (3, 3), 0)`` (:func:`opencv_blur`), max-normalised."""
    pooled = F.adaptive_avg_pool2d(regions[:, None].float(), grid)[:, 0]
    return normalise_maps(opencv_blur(pooled))


def l1_to_human(maps: Tensor, regions: Tensor) -> Tensor:
    """``(B,)`` the mean over the grid of ``|map − human map|`` (GRADIA's ``nn.L1Loss`` per image)."""
    return (maps - human_maps(regions, tuple(maps.shape[-2:]))).abs().mean(dim=(-2, -1))


class Gradia(MapGuided):
    """GRADIA's loss, with per-image weights from the reasonability quadrant of the original model.

    An image's quadrant: reasonable when the annotator answered *yes* about the original model's
    map for the class it predicts, unreasonable for *no* (a *maybe* is not reasonable: it is no
    judgement), crossed with whether the original model's prediction is right.
    """

    needs = frozenset({Need.PREDICTED_MAP_ANSWERS, Need.ATTENTION_MAPS})

    class Params(MapGuided.Params):
        reasonable_accurate: Pair = (1.0, 0.0)
        unreasonable_accurate: Pair = (0.4, 1.6)
        reasonable_inaccurate: Pair = (0.8, 0.2)
        unreasonable_inaccurate: Pair = (1.0, 1.0)
        lam: float = Field(default=1.0, ge=0, description="weight λ of the attention loss")
        gradcam: Literal["per-image", "batched"] = Field(
            default="per-image",
            description='where the training Grad-CAM is computed: "per-image" as GRADIA.py does (each image with w_att > 0 explained alone, '
            "in train mode, so batch norm uses that image's statistics; the cross-entropy from one forward pass of the minibatch); "
            '"batched": the whole minibatch explained in the cross-entropy\'s forward pass (faster; equal without batch norm)',
        )

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradiaGradCam()

    def weights(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        accurate = predict(model, context.train.images, context.device).argmax(dim=1) == context.train.labels
        p = self.params
        table = {name.replace("_", "-"): getattr(p, name) for name in ("reasonable_accurate", "unreasonable_accurate", "reasonable_inaccurate", "unreasonable_inaccurate")}
        w_pred, w_att = quadrant_weights(context.require_predicted_map_answers(self.name), accurate, table)
        if context.drawings is not None:  # without a drawn map GRADIA keeps (1, 0)
            w_pred = torch.where(context.drawings.drawn, w_pred, torch.ones_like(w_pred))
        return w_pred, w_att

    def attention_maps(self, model: Classifier, images: Tensor, targets: Tensor) -> Tensor:
        """``(B, h, w)`` GRADIA's Grad-CAM of ``images`` for ``targets``, with the graph kept: each
        image alone (``"per-image"``) or the whole batch in one pass (``"batched"``)."""
        if self.params.gradcam == "batched" or len(images) == 0:
            return self.gradcam.explain(model, images, targets)[0]
        return torch.cat([self.gradcam.explain(model, images[i : i + 1], targets[i : i + 1])[0] for i in range(len(images))])

    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(logits, L1 per image)`` for every image of the minibatch."""
        if self.params.gradcam == "batched":
            current, logits = self.gradcam.explain(model, batch.images, batch.labels)
        else:
            logits, current = model(batch.images), self.attention_maps(model, batch.images, batch.labels)
        return logits, l1_to_human(current, regions)

    def loss(self, model: Classifier, batch: Batch, prepared: Drawings) -> Tensor:
        regions, w_att = rows(prepared.regions, batch), rows(prepared.w_guide, batch)
        aligned = w_att > 0
        if self.params.gradcam == "batched":
            logits, l1 = self.guidance(model, batch, regions, prepared.generator)
            l1 = l1[aligned]
        else:  # GRADIA.py: the minibatch's forward pass, then each image it aligns explained alone
            logits = model(batch.images)
            if aligned.any():
                l1 = l1_to_human(self.attention_maps(model, batch.images[aligned], batch.labels[aligned]), regions[aligned])
        prediction = (rows(prepared.w_pred, batch) * F.cross_entropy(logits, batch.labels, reduction="none")).mean()
        log_term("cross_entropy", prediction, "mean")
        if not aligned.any():
            return prediction
        attention = self.params.lam * (w_att[aligned] * l1).mean()
        log_term("attention", attention, "mean")
        return prediction + attention


@hookimpl
def crayon_refiners():
    return {"gradia": Gradia}
