"""Lazily read items: the same values whichever way they are read, the CRAYON transforms' geometry,
and clean errors from decoding workers."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from crayon_plugins.data.items import FileImages, FileMasks, Loading, TensorItems, random_resized_crop_box
from crayon_plugins.errors import DataError


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 16), seed=st.integers(0, 100))
def test_tensor_items_stream_exactly_the_indexed_rows(n, batch, seed):
    tensor = torch.randn(n, 3, 2, 2, generator=torch.Generator().manual_seed(seed))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    items = TensorItems(tensor)
    seen = list(items.batches(order, batch))
    assert torch.equal(torch.cat([i for i, _ in seen]), order)
    assert torch.equal(torch.cat([x for _, x in seen]), tensor[order])
    assert torch.equal(items[order[:3]], tensor[order[:3]]) and torch.equal(items[1:], tensor[1:]) and torch.equal(items[0], tensor[0])


def _write(folder, n, size=(40, 60)):
    """``n`` RGB PNGs: image ``i`` is ``i`` everywhere except a white 10-px square in the centre."""
    paths = []
    for i in range(n):
        pixels = np.full((*size, 3), 10 * i, dtype=np.uint8)
        h, w = size[0] // 2, size[1] // 2
        pixels[h - 5 : h + 5, w - 5 : w + 5] = 255
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_file_images_resize_to_a_square_then_centre_crop(tmp_path):
    images = FileImages(_write(tmp_path, 3), size=16, resize=20)
    assert images.shape == (3, 3, 16, 16)
    x = images[2]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
    assert x.min() >= 0 and x.max() <= 1
    assert abs(float(x[0, 0, 0]) - 20 / 255) < 0.01  # a corner keeps the background value
    assert float(x[0, 8, 8]) == pytest.approx(1.0, abs=0.01)  # the centre square survives the crop


def test_decoding_workers_give_what_the_calling_process_gives(tmp_path):
    images = FileImages(_write(tmp_path, 7), size=8, resize=10)
    order = torch.tensor([6, 0, 3, 1, 5, 2, 4])
    alone = torch.cat([x for _, x in images.batches(order, 3)])
    workers = torch.cat([x for _, x in images.with_loading(Loading(num_workers=2)).batches(order, 3)])
    assert torch.equal(alone, workers) and torch.equal(alone, images[order])


def test_augmentation_depends_on_the_seed_not_on_the_workers_and_only_on_the_training_view(tmp_path):
    images = FileImages(_write(tmp_path, 5, size=(30, 30)), size=8, resize=10)

    def draw(workers, seed=1):
        view = images.augmented().with_loading(Loading(num_workers=workers))
        return torch.cat([x for _, x in view.batches(torch.tensor([4, 0, 2, 1, 3]), 2, torch.Generator().manual_seed(seed))])

    assert torch.equal(draw(0), draw(2)) and torch.equal(draw(0), draw(1))
    assert not torch.equal(draw(0), draw(0, seed=2)) and not torch.equal(draw(0), images[torch.tensor([4, 0, 2, 1, 3])])
    assert images.augmented().augmented().augment
    fixed = FileImages(images.paths, size=8, resize=10, augmentable=False)
    assert fixed.augmented() is fixed


@pytest.mark.parametrize("workers", [0, 2])
def test_an_undecodable_image_is_an_error_naming_the_file_without_a_worker_traceback(tmp_path, workers):
    paths = _write(tmp_path, 3)
    paths[1].write_text("not an image")
    images = FileImages(paths, size=8, resize=10).with_loading(Loading(num_workers=workers))
    with pytest.raises(DataError) as error:
        list(images.batches())
    assert str(error.value).startswith(f"{paths[1]}: cannot decode the image")
    assert "Traceback" not in str(error.value)


def test_masks_keep_the_images_geometry_and_stay_binary(tmp_path):
    path = tmp_path / "mask.png"
    pixels = np.zeros((40, 60), dtype=np.uint8)
    pixels[15:25, 25:35] = 7  # any non-zero value is the object
    Image.fromarray(pixels).save(path)
    mask = FileMasks([path], size=16, resize=20)[0]
    assert mask.dtype == torch.bool and mask.shape == (16, 16)
    rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
    assert (int(rows.min()), int(rows.max())) == (6, 10) and (int(cols.min()), int(cols.max())) == (7, 9)  # nearest: source index ⌊i · in / out⌋, then a 2-px crop


@given(height=st.integers(1, 64), width=st.integers(1, 64), low=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_a_random_resized_crop_box_lies_inside_the_image(height, width, low, seed):
    top, left, h, w = random_resized_crop_box(height, width, (low, 1.0), torch.Generator().manual_seed(seed))
    assert 0 <= top and 0 <= left and 0 < h and 0 < w and top + h <= height and left + w <= width


def test_after_ten_failed_tries_the_crop_is_torchvisions_central_fallback():
    """A 10 × 100 image cannot hold 90 % of its area at aspect 3/4–4/3: torchvision's fallback, the
    largest central crop at aspect 4/3: h = 10, w = round(10 · 4/3) = 13, left = (100 − 13) // 2 = 43."""
    assert random_resized_crop_box(10, 100, (0.9, 1.0), torch.Generator().manual_seed(0)) == (0, 43, 10, 13)
    assert random_resized_crop_box(100, 10, (0.9, 1.0), torch.Generator().manual_seed(0)) == (43, 0, 13, 10)
    assert random_resized_crop_box(1, 1, (0.9, 1.0), torch.Generator().manual_seed(0)) == (0, 0, 1, 1)
