"""A user's own images as they are: the ``image-folder`` and ``csv`` datasets, data without a group
attribute end to end, and Waterbirds in both of its layouts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from crayon_plugins.plugins.datasets.image_folder import carve
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rich.console import Console

from crayon_plugins.api.folders import Item
from crayon_plugins.config import RunConfig
from crayon_plugins.errors import ConfigError, DataError
from crayon_plugins.factory import create_dataset
from crayon_plugins.registry import builtin_modules
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.testing import PROMISES, check_dataset
from crayon_plugins.testing.benchmark_folders import write_waterbirds
from crayon_plugins.testing.user_folders import write_csv_table, write_image_folder

SIZE = 32


def dataset(name: str, root: Path, **options):
    return create_dataset(name, {"root": str(root), "image_size": SIZE, **options})


def written_mask(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path))) > 0


def test_the_new_datasets_are_builtin_modules():
    assert {"crayon_plugins.plugins.datasets.image_folder", "crayon_plugins.plugins.datasets.csv_table"} <= set(builtin_modules())


# --- image-folder --------------------------------------------------------------------------------


def test_split_folders_are_the_splits(tmp_path):
    written = write_image_folder(tmp_path, per_class={"train": 4, "val": 2, "test": 3}, classes=("zebra", "ant"), splits=True)
    found = dataset("image-folder", tmp_path)
    for split, count in (("train", 4), ("val", 2), ("test", 3)):
        loaded = found.load(split)
        assert loaded.ids == tuple(written[split]) and len(loaded) == 2 * count
        assert loaded.ids[0] == f"{split}/ant/ant_00.png"
        assert loaded.class_names == ("ant", "zebra") and loaded.labels.tolist() == [0] * count + [1] * count
        assert loaded.spurious_names == () and not loaded.has_groups and loaded.masks is None
        assert loaded.images.shape == (2 * count, 3, SIZE, SIZE)
    assert not found.has_masks() and not found.has_groups()


def test_one_tree_is_split_by_seeded_stratified_shares(tmp_path):
    write_image_folder(tmp_path, per_class=10, classes=("a", "b", "c"))
    splits = {s: dataset("image-folder", tmp_path).load(s) for s in ("train", "val", "test")}
    # per class of 10: test round(0.2 × 10) = 2, val round(0.125 × 8) = 1, train the other 7
    assert {s: torch.bincount(x.labels, minlength=3).tolist() for s, x in splits.items()} == {"train": [7] * 3, "val": [1] * 3, "test": [2] * 3}
    ids = [i for x in splits.values() for i in x.ids]
    assert len(set(ids)) == 30 and all(i.count("/") == 1 for i in ids)  # a/a_00.png: below root, forward slashes
    again = dataset("image-folder", tmp_path).load("test")
    other = dataset("image-folder", tmp_path, split_seed=1).load("test")
    assert again.ids == splits["test"].ids and other.ids != splits["test"].ids
    halves = dataset("image-folder", tmp_path, split=[0.5, 0.25, 0.25]).load("train")
    assert torch.bincount(halves.labels).tolist() == [5] * 3  # test round(2.5) = 2, val round(2.67) = 3


def test_a_missing_val_folder_is_taken_out_of_train(tmp_path):
    write_image_folder(tmp_path, per_class={"train": 8, "val": 0, "test": 2}, splits=True)  # no val/ folder
    assert not (tmp_path / "val").exists()
    found = dataset("image-folder", tmp_path)
    train, val = found.load("train"), found.load("val")
    assert len(train) == 14 and len(val) == 2  # 0.1 / 0.8 of each class of 8: one
    assert set(train.ids).isdisjoint(val.ids) and all(i.startswith("train/") for i in val.ids)
    assert len(found.load("test")) == 4


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 15), min_size=1, max_size=4),
    shares=st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8)),
    seed=st.integers(0, 1000),
)
def test_the_seeded_split_is_a_stratified_reproducible_partition(sizes, shares, seed):
    items = [Item(f"{c}/{i}", Path(f"{c}/{i}.png"), c, 0) for c, n in enumerate(sizes) for i in range(n)]
    fractions = dict(zip(("train", "val", "test"), (s / sum(shares) for s in shares)))
    parts = carve(items, fractions, seed)
    assert parts == carve(items, fractions, seed)
    assert sorted(i.id for part in parts.values() for i in part) == sorted(i.id for i in items)

    def held(n: int, fraction: float) -> int:
        return min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0

    for c, n in enumerate(sizes):
        count = {name: sum(i.label == c for i in part) for name, part in parts.items()}
        test = held(n, fractions["test"] / sum(fractions.values()))
        val = held(n - test, fractions["val"] / (fractions["train"] + fractions["val"]))
        assert count == {"train": n - test - val, "val": val, "test": test}
    for part in parts.values():  # each part keeps the items' order
        assert [items.index(i) for i in part] == sorted(items.index(i) for i in part)


def test_masks_mirror_the_image_tree(tmp_path):
    write_image_folder(tmp_path, per_class=5, masks=True)  # masks/ sits beside the class folders
    found = dataset("image-folder", tmp_path, masks="masks", resize=SIZE)  # resize = size: pixels as written
    assert found.has_masks()
    train = found.load("train")
    assert train.class_names == ("cat", "dog")  # masks/ is no class
    for item, mask in zip(train.ids, train.masks.all()):
        assert torch.equal(mask, written_mask(tmp_path / "masks" / item))
    (tmp_path / "masks" / train.ids[0]).unlink()
    with pytest.raises(DataError, match=rf"the mask of {tmp_path / train.ids[0]} does not exist"):
        dataset("image-folder", tmp_path, masks="masks").load("train")
    with pytest.raises(DataError, match=r"dataset\.masks: .*nowhere is not a folder"):
        dataset("image-folder", tmp_path, masks="nowhere").load("train")


def test_image_folder_errors_name_the_folders(tmp_path):
    write_image_folder(tmp_path / "a", per_class=2, splits=True)
    (tmp_path / "a" / "test" / "dog").rename(tmp_path / "a" / "test" / "dogs")
    with pytest.raises(DataError, match=rf"{tmp_path / 'a' / 'test'}: class folders cat, dogs differ from {tmp_path / 'a' / 'train'}'s: cat, dog"):
        dataset("image-folder", tmp_path / "a").load("train")
    shutil.rmtree(tmp_path / "a" / "train")
    with pytest.raises(DataError, match=r"has val/ and test/ but no train/ folder"):
        dataset("image-folder", tmp_path / "a").load("val")
    (tmp_path / "b" / "empty").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"{tmp_path / 'b'}: class folder empty holds no image"):
        dataset("image-folder", tmp_path / "b").load("train")
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no class folder"):
        dataset("image-folder", tmp_path / "c").load("train")
    with pytest.raises(ConfigError, match="add up to 1"):
        dataset("image-folder", tmp_path / "c", split=[0.5, 0.5, 0.5])


def test_too_few_images_to_split_three_ways_is_named(tmp_path):
    write_image_folder(tmp_path, per_class=2)
    with pytest.raises(DataError, match="no image falls in the val split"):
        dataset("image-folder", tmp_path).load("val")


# --- csv -----------------------------------------------------------------------------------------


def test_csv_rows_are_the_items_with_integer_labels_sorted_numerically(tmp_path):
    labels = [10, 2, 2, 10, 10, 2]
    rows = write_csv_table(tmp_path, labels * 2, ["train"] * 6 + ["val", "test"] * 3, groups=["water", "land"] * 6)
    found = dataset("csv", tmp_path)
    assert found.has_groups() and not found.has_masks()
    train = found.load("train")
    assert train.ids == tuple(r["path"] for r in rows[:6]) and train.ids[0] == "images/000.png"
    assert train.class_names == ("2", "10") and train.labels.tolist() == [1, 0, 0, 1, 1, 0]
    assert train.spurious_names == ("land", "water") and train.spurious.tolist() == [1, 0] * 3
    assert train.has_groups and train.group_names == ("2/land", "2/water", "10/land", "10/water")
    assert [len(found.load(s)) for s in ("val", "test")] == [3, 3]


def test_csv_without_a_group_column_has_no_group_attribute_and_reads_masks(tmp_path):
    write_csv_table(tmp_path, ["cat", "dog", "bird"] * 4, ["train"] * 6 + ["val"] * 3 + ["test"] * 3, masks=True)
    found = dataset("csv", tmp_path, resize=SIZE)
    assert found.has_masks() and not found.has_groups()
    assert "_items" not in found.__dict__  # answered from the header, no file checked
    test = found.load("test")
    assert test.class_names == ("bird", "cat", "dog") and test.spurious_names == () and not test.has_groups
    for item, mask in zip(test.ids, test.masks.all()):
        assert torch.equal(mask, written_mask(tmp_path / item.replace("images/", "masks/")))


def test_csv_paths_relative_to_an_images_folder(tmp_path):
    write_csv_table(tmp_path / "data", ["a", "b"] * 3, ["train", "val", "test"] * 2)
    table = tmp_path / "data" / "metadata.csv"
    (tmp_path / "labels.csv").write_text(table.read_text().replace("images/", ""))
    found = dataset("csv", tmp_path, metadata="labels.csv", images="data/images")
    assert found.load("val").ids == ("001.png", "004.png")


def test_csv_column_names_are_options(tmp_path):
    write_csv_table(tmp_path, [0, 1] * 3, ["train", "val", "test"] * 2, groups=[1, 0] * 3)
    table = tmp_path / "metadata.csv"
    table.write_text(table.read_text().replace("path,label,split,group", "file,y,part,place", 1))
    found = dataset("csv", tmp_path, path_column="file", label_column="y", split_column="part", group_column="place")
    assert found.load("train").spurious_names == ("0", "1") and found.load("train").labels.tolist() == [0, 1]
    with pytest.raises(DataError, match=r"metadata\.csv: line 1: no column mask \(dataset\.mask_column"):
        dataset("csv", tmp_path, path_column="file", label_column="y", split_column="part", mask_column="mask").has_masks()
    with pytest.raises(DataError, match=r"metadata\.csv: line 1: missing columns path, label, split"):
        dataset("csv", tmp_path).load("train")


@pytest.mark.parametrize(
    ("line", "change", "message"),
    [
        (3, lambda cells: cells.__setitem__(0, "images/nowhere.png"), r"metadata\.csv: line 3: image .*images/nowhere\.png does not exist"),
        (4, lambda cells: cells.__setitem__(3, ""), r"metadata\.csv: line 4: mask is empty"),
        (5, lambda cells: cells.__setitem__(2, "validation"), r"metadata\.csv: line 5: split must be one of train, val, test, got 'validation'"),
        (2, lambda cells: cells.__setitem__(1, " "), r"metadata\.csv: line 2: label is empty"),
        (6, lambda cells: cells.__setitem__(3, "masks/nowhere.png"), r"metadata\.csv: line 6: mask .*nowhere\.png does not exist"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path, line, change, message):
    write_csv_table(tmp_path, ["a", "b"] * 3, ["train", "val", "test"] * 2, masks=True)
    table = tmp_path / "metadata.csv"
    lines = table.read_text().splitlines()
    cells = lines[line - 1].split(",")
    change(cells)
    lines[line - 1] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        dataset("csv", tmp_path).load("train")


def test_a_csv_split_without_rows_is_named(tmp_path):
    write_csv_table(tmp_path, ["a", "b"] * 2, ["train", "val"] * 2)
    with pytest.raises(DataError, match=r"metadata\.csv: no row has split = test"):
        dataset("csv", tmp_path).load("test")


# --- contracts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "write", "options"),
    [
        ("image-folder", lambda root: write_image_folder(root, per_class=4, masks=True), {"masks": "masks"}),
        ("image-folder", lambda root: write_image_folder(root, per_class=2, splits=True), {}),
        ("csv", lambda root: write_csv_table(root, [0, 1] * 6, ["train", "val", "test"] * 4, groups=["x", "x", "y", "y"] * 3, masks=True), {}),
        ("csv", lambda root: write_csv_table(root, ["a", "b"] * 3, ["train", "val", "test"] * 2), {}),
    ],
)
def test_the_new_datasets_keep_the_dataset_contract(tmp_path, name, write, options):
    write(tmp_path)
    assert sorted(check_dataset(dataset(name, tmp_path, **options)).kept) == sorted(PROMISES["dataset"])


# --- Waterbirds' two layouts ---------------------------------------------------------------------


def test_waterbirds_reads_the_authors_layout_and_names_the_images_option(tmp_path):
    rows = write_waterbirds(tmp_path, 6, 4, 4, image_size=SIZE)
    (tmp_path / "images").mkdir()
    for species in {row["img_filename"].split("/")[0] for row in rows}:
        (tmp_path / species).rename(tmp_path / "images" / species)
    found = dataset("waterbirds", tmp_path)
    assert found.has_masks() and found.has_groups()
    train = found.load("train")
    assert train.ids == tuple(row["img_filename"] for row in rows if row["split"] == 0)
    assert len(train.images.all()) == 6 and len(train.masks.all()) == 6
    assert check_dataset(dataset("waterbirds", tmp_path)).kept
    first = tmp_path / "images" / rows[0]["img_filename"]
    first.unlink()
    with pytest.raises(DataError, match=rf'metadata\.csv: line 2: image {tmp_path / rows[0]["img_filename"]} does not exist; set images = "…" under \[dataset\]'):
        dataset("waterbirds", tmp_path).load("train")
    with pytest.raises(DataError, match=rf"line 2: image {first} does not exist"):
        dataset("waterbirds", tmp_path, images="images").load("train")


def test_waterbirds_without_segmentations_says_it_has_no_masks(tmp_path):
    write_waterbirds(tmp_path, 4, 2, 2, image_size=SIZE, segmentations=False)
    found = dataset("waterbirds", tmp_path)
    assert not found.has_masks() and found.load("test").masks is None
    assert "says-what-it-has" in check_dataset(found).kept


# --- a run on data without a group attribute -------------------------------------------------------


def test_a_run_on_class_folders_reports_per_class_accuracy(tmp_path, capsys):
    write_image_folder(tmp_path / "photos", per_class={"train": 12, "val": 4, "test": 4}, classes=("red", "green", "blue"), splits=True)
    config = RunConfig.model_validate(
        {
            "dataset": {"name": "image-folder", "root": str(tmp_path / "photos"), "image_size": SIZE},
            "backbone": {"name": "timm", "model": "resnet10t"},
            "annotator": {"name": "saliency-oracle"},
            "training": {"epochs": 2, "batch_size": 16},
            "selection": {"rule": "val-accuracy"},
            "refiners": ["finetune"],
            "refiner": {"finetune": {"epochs": 1, "batch_size": 16}},
            "metrics": ["accuracy", "group-accuracy"],
        }
    )
    results = Pipeline.from_config(config, cache=ArtefactCache(tmp_path / "cache")).run(tmp_path / "out")
    assert [row.method for row in results.rows] == ["original", "finetune"]
    for row in results.rows:
        metrics = row.metrics
        assert "wga" not in metrics and "mga" not in metrics and "groups" not in metrics
        assert set(metrics["class_accuracy"]) == {"blue", "green", "red"}
        assert metrics["worst_class_accuracy"] == min(metrics["class_accuracy"].values())
        assert metrics["accuracy"] == pytest.approx(sum(metrics["class_accuracy"].values()) / 3)  # 4 test images per class
        assert all("wga" not in epoch and "worst_class_accuracy" in epoch for epoch in row.selection[0]["validation"])
    assert (tmp_path / "out" / "results.json").is_file()
    table = results.table()
    assert [column.header for column in table.columns] == ["method", "worst class", "accuracy"]
    assert table.caption.startswith("The dataset has no group attribute: WGA and MGA are not measured")
    console = Console(width=200, record=True)
    console.print(table)
    assert f"{100 * results.row('original').metrics['worst_class_accuracy']:.2f}" in console.export_text()
    assert "warning" not in capsys.readouterr().err


# --- loaders that never decode wrong -------------------------------------------------------------


def test_a_16_bit_image_is_read_with_its_real_range(tmp_path):
    write_csv_table(tmp_path, ["a", "b"] * 3, ["train", "val", "test"] * 2)
    ramp = (np.arange(SIZE * SIZE, dtype=np.uint32).reshape(SIZE, SIZE) * 64).astype(np.uint16)  # 0 … 65472
    Image.fromarray(ramp).save(tmp_path / "images/000.png")  # a 16-bit grey PNG
    with Image.open(tmp_path / "images/000.png") as opened:
        assert opened.mode in ("I", "I;16")
    image = dataset("csv", tmp_path, resize=SIZE).load("train").images.item(0)
    expected = torch.from_numpy(np.round(ramp / 65535 * 255) / 255).float()
    assert torch.allclose(image[0], expected, atol=1e-6) and torch.equal(image[0], image[2])
    assert 0.45 < float(image.mean()) < 0.55  # converted straight to RGB it is all but white (mean 0.996)


def test_a_mask_of_another_size_than_its_image_is_named_unless_stretching_is_asked_for(tmp_path):
    write_csv_table(tmp_path, ["a", "b"] * 3, ["train", "val", "test"] * 2, masks=True)
    Image.new("L", (SIZE // 2, SIZE), 255).save(tmp_path / "masks/000.png")
    with pytest.raises(DataError, match=rf"masks/000\.png: the mask is {SIZE // 2}×{SIZE}, its image .*images/000\.png is {SIZE}×{SIZE}; .*resize_masks = true"):
        dataset("csv", tmp_path, resize=SIZE).load("train").masks.item(0)
    assert bool(dataset("csv", tmp_path, resize=SIZE, resize_masks=True).load("train").masks.item(0).all())


def test_the_fingerprint_walk_reads_around_what_it_cannot_stat_and_leaves_out_task_folders(tmp_path, capsys):
    write_csv_table(tmp_path, ["a", "b"] * 3, ["train", "val", "test"] * 2)
    before = dataset("csv", tmp_path).fingerprint()
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing.png")  # dangling
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # a loop
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_text("a Latin-1 name")  # not UTF-8
    after = dataset("csv", tmp_path).fingerprint()
    assert after != before and "2 entries under" in capsys.readouterr().err
    task = tmp_path / "annotation" / "maps"
    task.mkdir(parents=True)
    (task / ".crayon-task").touch()
    (task / "answers.jsonl").write_text("{}\n")
    assert dataset("csv", tmp_path).fingerprint() == after  # answering does not change the data
    (task / "answers.jsonl").write_text("{}\n{}\n")
    assert dataset("csv", tmp_path).fingerprint() == after


def test_an_image_in_two_splits_is_an_error_naming_it(tmp_path):
    rows = write_csv_table(tmp_path, ["a", "b"] * 6, ["train"] * 6 + ["val", "test"] * 3)
    table = tmp_path / "metadata.csv"
    table.write_text(table.read_text().replace(rows[11]["path"], rows[0]["path"]))  # the last test row is a training image
    config = RunConfig.model_validate({"dataset": {"name": "csv", "root": str(tmp_path), "image_size": SIZE}, "backbone": {"model": "resnet10t"}, "training": {"epochs": 1}, "refiners": [], "metrics": ["accuracy"]})
    with pytest.raises(DataError, match=r"images/000\.png is in both the train and the test split"):
        Pipeline.from_config(config, cache=ArtefactCache(tmp_path / "cache")).run()
