"""ActDiff's options: the weight λ of its activation distance and how the values outside the drawing
are shuffled (``values`` as the public code's ``shuffle_outside_mask`` indexes them, whole ``pixels``,
or each of the ``channels`` on its own), by hand on tiny tensors, as properties, and end to end."""

import math

import pytest
import torch
from crayon_plugins.plugins.refiners.map_baselines import shuffle_outside
from crayon_plugins.plugins.refiners.map_guided import Drawings
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import original_and_context, tiny_pipeline
from torch import nn

from crayon_plugins import create_refiner
from crayon_plugins.api import Batch, ConfigError

MODES = ["values", "pixels", "channels"]


def seed_drawing(*draws: list[int]) -> int:
    """The first generator seed whose successive ``randperm(len(d))`` give ``draws``, so the tests
    below can state the shuffled images by hand."""
    for seed in range(10_000):
        generator = torch.Generator().manual_seed(seed)
        if all(torch.randperm(len(d), generator=generator).tolist() == d for d in draws):
            return seed
    raise AssertionError(f"no seed draws {draws}")


class Identity(nn.Module):
    """A stand-in classifier: the features are the image, pooling flattens them and the head gives
    zero logits (cross-entropy ln 2 for two classes) that still depend on the features."""

    def features(self, images):
        return images

    def pool(self, features):
        return features.flatten(1)

    def head(self, features):
        return self.pool(features)[:, :2] * 0.0


def actdiff_loss(lam: float, shuffle: str, images, regions, seed: int) -> float:
    refiner = create_refiner("actdiff", {"lam": lam, "shuffle": shuffle})
    drawn = regions.flatten(1).any(dim=1)
    prepared = Drawings(torch.ones(len(images)), drawn.float(), regions, torch.Generator().manual_seed(seed))
    batch = Batch(torch.arange(len(images)), images, torch.zeros(len(images), dtype=torch.long))
    return float(refiner.loss(Identity(), batch, prepared))


def test_the_weight_scales_the_activation_distance_by_hand():
    """One image, one channel, three pixels [5, 1, 3]; the first is drawn. The seed's permutation of
    the two outside pixels swaps them: x_shuffled = [5, 3, 1], so the distance is
    ‖[0, −2, 2] + 10⁻⁶‖₂ = √8 = 2.828427 and the cross-entropy of the zero logits ln 2 = 0.693147:

    - λ = 1 (the default, the public code's unscaled term): 0.693147 + 2.828427 = 3.521574;
    - λ = 0.1 (the CRAYON comparison's on Waterbirds): 0.693147 + 0.282843 = 0.975990;
    - λ = 0: ln 2 alone.

    On one channel all three shuffles are the same permutation. A second image without a drawing
    adds its cross-entropy and no distance, and the sum is divided by the batch's 2 images:
    (2 · 0.693147 + 0.1 · 2.828427) / 2 = 0.834569."""
    seed = seed_drawing([1, 0])
    images = torch.tensor([[[[5.0, 1.0, 3.0]]]])
    regions = torch.tensor([[[True, False, False]]])
    for mode in MODES:
        assert torch.equal(shuffle_outside(images, regions, torch.Generator().manual_seed(seed), mode), torch.tensor([[[[5.0, 3.0, 1.0]]]]))
        assert actdiff_loss(1.0, mode, images, regions, seed) == pytest.approx(3.521574, abs=1e-5)
        assert actdiff_loss(0.1, mode, images, regions, seed) == pytest.approx(0.975990, abs=1e-5)
        assert actdiff_loss(0.0, mode, images, regions, seed) == pytest.approx(math.log(2), abs=1e-6)
    two = torch.cat([images, torch.tensor([[[[7.0, 8.0, 9.0]]]])])
    regions_two = torch.cat([regions, torch.zeros(1, 1, 3, dtype=torch.bool)])
    assert actdiff_loss(0.1, "values", two, regions_two, seed) == pytest.approx(0.834569, abs=1e-5)


def test_the_defaults_are_the_public_codes():
    params = create_refiner("actdiff").params
    assert params.lam == 1.0 and params.shuffle == "values"
    with pytest.raises(ConfigError, match="shuffle"):
        create_refiner("actdiff", {"shuffle": "rows"})


def test_the_three_shuffles_of_an_rgb_image_by_hand():
    """A 3×1×3 image (channels R, G, B) whose first pixel is drawn; outside, R = [1, 2], G = [3, 4],
    B = [5, 6]. With three draws of a two-element permutation (swap, keep, swap):

    - ``channels`` uses one draw per channel: R swapped, G kept, B swapped → R [2, 1], G [3, 4], B [6, 5];
    - ``pixels`` uses the first draw for every channel: all swapped → R [2, 1], G [4, 3], B [6, 5],
      so the pixels (1, 3, 5) and (2, 4, 6) stay whole colours;
    - ``values`` permutes the six values together: each channel's pair may hold another channel's
      values, and the drawn pixel (9, 9, 9) stays."""
    seed = seed_drawing([1, 0], [0, 1], [1, 0])
    image = torch.tensor([[[[9.0, 1.0, 2.0]], [[9.0, 3.0, 4.0]], [[9.0, 5.0, 6.0]]]])
    regions = torch.tensor([[[True, False, False]]])

    def shuffled(mode):
        return shuffle_outside(image, regions, torch.Generator().manual_seed(seed), mode)[0, :, 0]

    assert shuffled("channels").tolist() == [[9, 2, 1], [9, 3, 4], [9, 6, 5]]
    assert shuffled("pixels").tolist() == [[9, 2, 1], [9, 4, 3], [9, 6, 5]]
    values = shuffled("values")
    assert values[:, 0].tolist() == [9, 9, 9] and sorted(values[:, 1:].flatten().tolist()) == [1, 2, 3, 4, 5, 6]
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(6, generator=generator)
    assert values[:, 1:].flatten().tolist() == torch.tensor([1.0, 2, 3, 4, 5, 6])[order].tolist()  # channel-major, as X[b, mask] orders them


@st.composite
def drawn_images(draw):
    """Images of distinct values (so a permutation can be read back) and drawn regions, some empty."""
    b, c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    regions = torch.tensor(draw(st.lists(st.booleans(), min_size=b * h * w, max_size=b * h * w))).view(b, h, w)
    return torch.randperm(b * c * h * w, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16)))).float().view(b, c, h, w), regions


@settings(max_examples=150, deadline=None)
@given(drawn_images(), st.integers(0, 2**16))
def test_the_channel_shuffle_permutes_each_channel_on_its_own(data, seed):
    """``channels``: inside the drawing nothing moves, an image without a drawing stays whole, and
    outside each channel's values are a permutation of its own, namely the next ``randperm`` of the
    generator: one independent draw per channel, in channel order."""
    images, regions = data
    out = shuffle_outside(images, regions, torch.Generator().manual_seed(seed), "channels")
    reference = torch.Generator().manual_seed(seed)
    for b in range(len(images)):
        if not bool(regions[b].any()):
            assert torch.equal(out[b], images[b])
            continue
        inside, outside = regions[b], ~regions[b]
        assert torch.equal(out[b][:, inside], images[b][:, inside])
        for c in range(images.shape[1]):
            before, after = images[b, c][outside], out[b, c][outside]
            assert sorted(after.tolist()) == sorted(before.tolist())  # this channel's own values
            read_back = [before.tolist().index(v) for v in after.tolist()]  # the values are distinct
            assert read_back == torch.randperm(len(before), generator=reference).tolist()


@settings(max_examples=100, deadline=None)
@given(drawn_images(), st.integers(0, 2**16), st.sampled_from(MODES))
def test_every_shuffle_keeps_the_drawing_and_the_outside_values(data, seed, mode):
    """Every mode keeps the drawn pixels and moves only values outside; ``pixels`` keeps each colour
    whole, ``channels`` each channel's values, ``values`` the values of all channels together; on one
    channel the three modes give the same image."""
    images, regions = data
    out = shuffle_outside(images, regions, torch.Generator().manual_seed(seed), mode)
    for b in range(len(images)):
        inside, outside = regions[b] | ~regions[b].any(), ~regions[b] & regions[b].any()
        assert torch.equal(out[b][:, inside], images[b][:, inside])
        before, after = images[b][:, outside], out[b][:, outside]
        assert sorted(after.flatten().tolist()) == sorted(before.flatten().tolist())
        if mode == "pixels":
            assert sorted(map(tuple, after.T.tolist())) == sorted(map(tuple, before.T.tolist()))
        if mode == "channels":
            assert all(sorted(a.tolist()) == sorted(o.tolist()) for a, o in zip(after, before))
    if images.shape[1] == 1:
        same = [shuffle_outside(images, regions, torch.Generator().manual_seed(seed), m) for m in MODES]
        assert all(torch.equal(same[0], s) for s in same[1:])


def test_the_channel_shuffle_breaks_the_colours_the_pixel_shuffle_keeps():
    """On an image whose outside pixels are 64 distinct colours, the channel shuffle leaves almost no
    colour whole, the pixel shuffle every one."""
    images = torch.rand(1, 3, 8, 9)
    regions = torch.zeros(1, 8, 9, dtype=torch.bool)
    regions[0, :, 8] = True  # a drawn column: 64 pixels outside

    def colours(x):
        return set(map(tuple, x[0][:, ~regions[0]].T.tolist()))

    assert colours(shuffle_outside(images, regions, torch.Generator().manual_seed(0), "pixels")) == colours(images)
    assert len(colours(shuffle_outside(images, regions, torch.Generator().manual_seed(0), "channels")) & colours(images)) < 8


@pytest.mark.parametrize("options", [{"lam": 0.1, "shuffle": "channels"}, {"lam": 0.1, "shuffle": "values"}])
def test_actdiff_with_its_options_refines_the_tiny_model(tmp_path, options):
    model, context = original_and_context(tiny_pipeline(tmp_path, refiners=["actdiff"]))
    refined = create_refiner("actdiff", {**options, "epochs": 1}).refine(model, context)
    assert not torch.equal(refined.classifier.weight, model.classifier.weight)
    assert all(bool(torch.isfinite(p).all()) for p in refined.parameters())
