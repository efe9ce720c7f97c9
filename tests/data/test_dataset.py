import time

import torch

from crayon_plugins import create_dataset


def test_generation_is_deterministic_and_fast():
    start = time.perf_counter()
    a = create_dataset("spurious-bars").load("train")
    assert time.perf_counter() - start < 30  # seconds, not minutes (a generous bound for a busy CI core)
    b = create_dataset("spurious-bars").load("train")
    assert torch.equal(a.images.all(), b.images.all()) and torch.equal(a.masks.all(), b.masks.all()) and a.ids == b.ids
    c = create_dataset("spurious-bars", {"seed": 1}).load("train")
    assert not torch.equal(a.images.all(), c.images.all())


def test_train_is_correlated_and_test_is_group_balanced():
    dataset = create_dataset("spurious-bars", {"n_train": 4000, "n_test": 1000, "correlation": 0.9})
    train, test = dataset.load("train"), dataset.load("test")
    agreement = (train.labels == train.spurious).double().mean().item()
    assert abs(agreement - 0.9) < 0.02
    assert torch.bincount(test.groups, minlength=4).tolist() == [250] * 4
    assert test.group_names == ("horizontal/red", "horizontal/blue", "vertical/red", "vertical/blue")


def test_masks_cover_the_bar_with_its_orientation():
    split = create_dataset("spurious-bars", {"n_test": 40}).load("test")
    rows = split.masks.all().any(dim=2).sum(dim=1)  # extent of the mask in rows (height)
    cols = split.masks.all().any(dim=1).sum(dim=1)
    horizontal = split.labels == 0
    assert (cols[horizontal] > rows[horizontal]).all() and (rows[~horizontal] > cols[~horizontal]).all()
    assert split.images.all().min() >= 0 and split.images.all().max() <= 1
