import time

import pytest
import torch

from crayon_plugins import create_dataset
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.run.stages.load import warn_missing_groups


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


def test_a_split_without_a_group_attribute_falls_back_to_classes():
    n = 6
    split = ImageSet(torch.zeros(n, 3, 4, 4), torch.tensor([0, 1, 1, 0, 1, 1]), torch.zeros(n, dtype=torch.int64), None, tuple(map(str, range(n))), ("cat", "dog"), ())
    assert not split.has_groups and create_dataset("spurious-bars", {"n_train": 8, "n_val": 4, "n_test": 4}).load("val").has_groups
    assert split.group_names == ("cat", "dog") and torch.equal(split.groups, split.labels)
    assert split.group_shares().tolist() == [pytest.approx(1 / 3), pytest.approx(2 / 3)] and split.missing_groups() == []
    with pytest.raises(ValueError, match="spurious must be all zero"):
        ImageSet(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), torch.tensor([0, 1]), None, ("a", "b"), ("cat", "dog"), ())


def test_missing_classes_of_a_split_without_groups_are_warned_as_classes(capsys):
    train = ImageSet(torch.zeros(3, 3, 4, 4), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.int64), None, ("a", "b", "c"), ("x", "y", "z"), ())
    test = ImageSet(torch.zeros(2, 3, 4, 4), torch.tensor([0, 0]), torch.zeros(2, dtype=torch.int64), None, ("d", "e"), ("x", "y", "z"), ())
    warn_missing_groups(train, test)
    err = capsys.readouterr().err
    assert "the test split has no item of class(es) y, z: worst-class accuracy is taken over the classes it has" in " ".join(err.split())
    assert "training split" not in err and "WGA" not in err
