"""``top-patches``: each neuron's most activating training images and the patch around each peak.

CRAYON-Pruning (arXiv 2410.22312) shows an annotator a neuron's top-20 training images, cropped to the
patch around the location where the neuron fires most, and asks whether that concept is relevant.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt

from crayon_plugins.api import Classifier, ConceptExtractor, ConfigError, ImageSet, NeuronConcepts, Params, hookimpl
from crayon_plugins.utils.progress import progress_bar


class TopPatches(ConceptExtractor):
    """Top-``k`` training images per neuron by maximum activation, with the patch around each arg-max.

    One batched pass over the training split with the model in ``eval`` mode records, for every image
    and neuron (channel of the last feature map), the maximum activation over the feature grid and the
    cell where it occurs. The patch is that cell's pixel footprint widened by ``context`` cells on each
    side and clipped to the image: 24×24 px on the default benchmark's 8×8 grid of 64-px images.
    """

    class Params(Params):
        k: PositiveInt = Field(default=20, description="images per neuron")
        context: int = Field(default=1, ge=0, description="feature cells added around the arg-max cell on each side")
        batch_size: PositiveInt = 128

    def extract(self, model: Classifier, train: ImageSet) -> NeuronConcepts:
        p = self.params
        if p.k > len(train):
            raise ConfigError(f"concepts.k: {p.k} images per neuron, but the training split has {len(train)}")
        device = next(model.parameters()).device
        model.eval()
        peaks, places = [], []
        with torch.no_grad(), progress_bar("extract neuron concepts", -(-len(train) // p.batch_size)) as advance:
            for _, batch in train.images.batches(batch_size=p.batch_size):
                features = model.features(batch.to(device, non_blocking=True))
                value, place = features.flatten(2).max(dim=2)
                peaks.append(value.cpu())
                places.append(place.cpu())
                advance()
        grid = tuple(features.shape[-2:])
        activations, places = torch.cat(peaks), torch.cat(places)  # (N, C) each
        top_activations, top_images = (t.T.contiguous() for t in activations.topk(p.k, dim=0))  # (C, k)
        place = places.gather(0, top_images.T).T  # (C, k) flat grid index of each arg-max
        cells = torch.stack([place // grid[1], place % grid[1]], dim=-1)
        size = train.image_size
        return NeuronConcepts(
            neuron_ids=tuple(f"neuron-{c:04d}" for c in range(activations.shape[1])),
            activations=activations,
            top_images=top_images,
            top_activations=top_activations,
            cells=cells,
            boxes=patch_boxes(cells, grid, size, p.context),
            grid=grid,
            image_size=size,
        )


def patch_boxes(cells: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], context: int) -> torch.Tensor:
    """``(…, 4)`` pixel boxes ``top, left, bottom, right`` of the cells ``(…, 2)`` widened by ``context``
    cells on each side, clipped to the image (cell ``i`` of ``h`` spans pixels ``⌊iH/h⌋`` to ``⌊(i+1)H/h⌋``)."""
    (h, w), (height, width) = grid, size
    rows, cols = cells[..., 0], cells[..., 1]
    top = ((rows - context).clamp(min=0) * height) // h
    left = ((cols - context).clamp(min=0) * width) // w
    bottom = ((rows + 1 + context).clamp(max=h) * height) // h
    right = ((cols + 1 + context).clamp(max=w) * width) // w
    return torch.stack([top, left, bottom, right], dim=-1)


@hookimpl
def crayon_concept_extractors():
    return {"top-patches": TopPatches}
