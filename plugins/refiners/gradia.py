"""``gradia``: attention alignment weighted by each image's reasonability quadrant.

GRADIA: Gao et al., "Aligning Eyes between Humans and Deep Neural Network through Interactive
Attention Alignment" (CSCW 2022). Every default below is the public code's (YuyangGao/GRADIA,
``GRADIA.py``):

- the (prediction, attention) weights per quadrant, set in its ``ImageFolderWithMapsAndWeights``:
  reasonable-accurate (1, 0), unreasonable-accurate (0.4, 1.6), reasonable-inaccurate (0.8, 0.2),
  unreasonable-inaccurate (1, 1); an image without a judgement or without a drawn map keeps (1, 0);
- the loss, ``mean_batch(w_pred·CE) + λ · mean over images with w_att > 0 of w_att·L1``, the L1 a
  mean over the feature grid, with λ = 1 (its ``--attention_weight`` is never applied);
- its Grad-CAM (``get_attention_map``): channel weights from a gradient hook, so constants (no
  ``create_graph``), no ReLU, min–max normalised per image (:class:`~crayon_plugins.model.gradcam.GradiaGradCam`);
- the human map: the drawing resized to the grid by area (``cv2.INTER_AREA``), a 3×3 Gaussian blur,
  divided by its maximum.

One difference: the public code explains image by image; here a minibatch is explained at once,
which is the same whenever the model's outputs for an image do not depend on its batch-mates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.map_guided import Drawings, MapGuided
from pydantic import Field
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

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


def human_maps(regions: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(N, H, W)`` bool drawings → ``(N, h, w)`` maps as GRADIA makes them: area-resized to the
    grid, blurred with a 3×3 Gaussian (σ 0.8, OpenCV's for that size), max-normalised."""
    pooled = F.adaptive_avg_pool2d(regions[:, None].float(), grid)
    if min(grid) >= 2:  # the blur's reflection padding needs two cells
        pooled = gaussian_blur(pooled, kernel_size=[3, 3], sigma=[0.8, 0.8])
    return normalise_maps(pooled[:, 0])


class Gradia(MapGuided):
    """GRADIA's loss, with per-image weights from the reasonability quadrant of the original model.

    An image's quadrant: reasonable when the annotator answered *yes* about the original model's
    map, unreasonable for *no* (a *maybe* is not reasonable: it is no judgement), crossed with
    whether the original model's prediction is right.
    """

    needs = frozenset({Need.MAP_ANSWERS, Need.ATTENTION_MAPS})

    class Params(MapGuided.Params):
        reasonable_accurate: Pair = (1.0, 0.0)
        unreasonable_accurate: Pair = (0.4, 1.6)
        reasonable_inaccurate: Pair = (0.8, 0.2)
        unreasonable_inaccurate: Pair = (1.0, 1.0)
        lam: float = Field(default=1.0, ge=0, description="weight λ of the attention loss")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradiaGradCam()

    def weights(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        accurate = predict(model, context.train.images, context.device).argmax(dim=1) == context.train.labels
        p = self.params
        table = {name.replace("_", "-"): getattr(p, name) for name in ("reasonable_accurate", "unreasonable_accurate", "reasonable_inaccurate", "unreasonable_inaccurate")}
        w_pred, w_att = quadrant_weights(context.map_answers, accurate, table)
        if context.drawings is not None:  # without a drawn map GRADIA keeps (1, 0)
            w_pred = torch.where(context.drawings.drawn, w_pred, torch.ones_like(w_pred))
        return w_pred, w_att

    def guidance(self, model: Classifier, batch: Batch, regions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        current, logits = self.gradcam.explain(model, batch.images, batch.labels)
        return logits, (current - human_maps(regions, tuple(current.shape[-2:]))).abs().mean(dim=(-2, -1))

    def loss(self, model: Classifier, batch: Batch, prepared: Drawings) -> Tensor:
        logits, l1 = self.guidance(model, batch, rows(prepared.regions, batch), prepared.generator)
        w_att = rows(prepared.w_guide, batch)
        prediction = (rows(prepared.w_pred, batch) * F.cross_entropy(logits, batch.labels, reduction="none")).mean()
        log_term("cross_entropy", prediction, "mean")
        aligned = w_att > 0
        if not aligned.any():
            return prediction
        attention = self.params.lam * (w_att[aligned] * l1[aligned]).mean()
        log_term("attention", attention, "mean")
        return prediction + attention


@hookimpl
def crayon_refiners():
    return {"gradia": Gradia}
