"""Hypothesis strategies for the framework's data, for property-based tests of components.

Each strategy draws small values (a few items, grids up to 8×8, images up to 16×16) so that a
property runs hundreds of examples in seconds, and each deliberately includes the edge cases that
break components: all-zero and single-peak maps, empty and full masks, answer sets that are empty or
all *maybe*. Pairs of maps of one shape come from :func:`map_shapes` and ``flatmap``::

    @given(map_shapes().flatmap(lambda shape: st.tuples(saliency_maps(shape), saliency_maps(shape))))
    def test_energy_is_bounded(maps):
        current, original = maps
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import Tensor

from crayon_plugins.annotation.records import CODES, NOT_ANNOTATED, Annotations, Answer, Question
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.testing.tiny import TinyBackbone, tiny_image_set

Shape = tuple[int, int, int]


def map_shapes(max_batch: int = 4, max_side: int = 8) -> st.SearchStrategy[Shape]:
    """``(B, h, w)`` with ``1 ≤ B ≤ max_batch`` and sides from 1 to ``max_side``."""
    side = st.integers(1, max_side)
    return st.tuples(st.integers(1, max_batch), side, side)


@st.composite
def saliency_maps(draw, shape: Shape | None = None, normalised: bool = True) -> Tensor:
    """``(B, h, w)`` float32 non-negative maps: all-zero, single-peak or arbitrary per image.

    With ``normalised`` each map is divided by its maximum, so it peaks at exactly 1 (an all-zero map
    stays zero); otherwise values range up to 1e3.
    """
    b, h, w = shape if shape is not None else draw(map_shapes())
    top = 1.0 if normalised else 1e3
    maps = []
    for _ in range(b):
        kind = draw(st.sampled_from(["zero", "peak", "any"]))
        if kind == "zero":
            maps.append(np.zeros((h, w), np.float32))
        elif kind == "peak":
            peak = np.zeros((h, w), np.float32)
            peak[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = draw(st.floats(2.0**-10, top, width=32))
            maps.append(peak)
        else:
            maps.append(draw(arrays(np.float32, (h, w), elements=st.floats(0, top, width=32))))
    out = torch.from_numpy(np.stack(maps))
    if not normalised:
        return out
    peaks = out.amax(dim=(1, 2), keepdim=True)
    return torch.where(peaks > 0, out / peaks.clamp(min=torch.finfo(out.dtype).tiny), out)


@st.composite
def object_masks(draw, shape: Shape | None = None) -> Tensor:
    """``(N, H, W)`` bool masks: empty, full, one rectangle or arbitrary per image."""
    n, h, w = shape if shape is not None else draw(map_shapes(max_side=16))
    masks = []
    for _ in range(n):
        kind = draw(st.sampled_from(["empty", "full", "rectangle", "any"]))
        if kind in ("empty", "full"):
            masks.append(np.full((h, w), kind == "full"))
        elif kind == "rectangle":
            top, left = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            bottom, right = draw(st.integers(top + 1, h)), draw(st.integers(left + 1, w))
            mask = np.zeros((h, w), bool)
            mask[top:bottom, left:right] = True
            masks.append(mask)
        else:
            masks.append(draw(arrays(bool, (h, w))))
    return torch.from_numpy(np.stack(masks))




@st.composite
def answer_codes(draw, n: int | None = None, unannotated: bool = True) -> Tensor:
    """``(n,)`` int64 :class:`~crayon_plugins.annotation.records.Answer` codes, one per item: mixed, all *maybe*,
    or (with ``unannotated``) with :data:`~crayon_plugins.annotation.records.NOT_ANNOTATED` items, up to all of them."""
    n = draw(st.integers(0, 12)) if n is None else n
    codes = CODES + ((NOT_ANNOTATED,) if unannotated else ())
    if draw(st.booleans()):
        value = draw(st.sampled_from([int(Answer.MAYBE)] + ([NOT_ANNOTATED] if unannotated else [])))
        return torch.full((n,), value, dtype=torch.int64)
    return torch.tensor(draw(st.lists(st.sampled_from(codes), min_size=n, max_size=n)), dtype=torch.int64)


@st.composite
def annotation_sets(
    draw, item_ids: tuple[str, ...] | None = None, question: Question = Question.MAPS, max_annotators: int = 3
) -> Annotations:
    """:class:`~crayon_plugins.annotation.records.Annotations` about ``item_ids`` (default: drawn), from up to
    ``max_annotators`` annotators who each answer a subset of the items: yes / no / maybe for
    ``question="maps"`` (ids ``item-…``), relevant / irrelevant / maybe for ``"neurons"`` (ids
    ``neuron-…``, the same codes). Includes the empty set and sets that are all *maybe*."""
    if item_ids is None:
        prefix = "neuron-" if question == Question.NEURONS else "item-"
        item_ids = tuple(f"{prefix}{i:04d}" for i in range(draw(st.integers(0, 10))))
    all_maybe = draw(st.booleans())
    rows: list[tuple[str, int, str]] = []
    for a in range(draw(st.integers(1, max_annotators))):
        for item in item_ids:
            if draw(st.booleans()):
                rows.append((item, int(Answer.MAYBE) if all_maybe else draw(st.sampled_from(CODES)), f"annotator-{a}"))
    items, answers, annotators = zip(*rows) if rows else ((), (), ())
    return Annotations(tuple(items), torch.tensor(answers, dtype=torch.int64), tuple(annotators))


@st.composite
def tiny_image_sets(draw, masks: bool | None = None) -> ImageSet:
    """Tiny :class:`~crayon_plugins.data.image_set.ImageSet` s: 2–16 images of 8–16 pixels, 2–3 classes, with
    object masks or (when ``masks`` is ``None``, sometimes) without."""
    return tiny_image_set(
        n=draw(st.integers(2, 16)),
        size=draw(st.integers(8, 16)),
        num_classes=draw(st.integers(2, 3)),
        masks=draw(st.booleans()) if masks is None else masks,
        seed=draw(st.integers(0, 2**16)),
    )


def tiny_backbones() -> st.SearchStrategy[TinyBackbone]:
    """:class:`~crayon_plugins.testing.tiny.TinyBackbone` s with 1–8 neurons and stride 1 or 2."""
    return st.builds(
        lambda channels, stride: TinyBackbone(TinyBackbone.Params(channels=channels, stride=stride)),
        st.integers(1, 8),
        st.integers(1, 2),
    )
