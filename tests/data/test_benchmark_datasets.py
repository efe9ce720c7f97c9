"""The real benchmarks' loaders on small fixtures written in their public formats, and MR / BG-Gap."""

from __future__ import annotations

import csv
import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from crayon_plugins.plugins.datasets import backgrounds_challenge, biased_celeba, waterbirds
from crayon_plugins.plugins.metrics import backgrounds as background_metrics
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from crayon_plugins.api.components import Predictions
from crayon_plugins.api.folders import hold_out, read_csv
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import Loading
from crayon_plugins.errors import CrayonError, DataError
from crayon_plugins.factory import create
from crayon_plugins.registry import build_registry, builtin_modules
from crayon_plugins.testing import PROMISES, check_dataset, check_metric
from crayon_plugins.testing.benchmark_folders import (
    CELEBA_ATTRIBUTES,
    CELEBA_FILES,
    IN9_CLASSES,
    write_backgrounds_challenge,
    write_biased_celeba,
    write_waterbirds,
)

SIZE = 32
REPOSITORY = Path(__file__).resolve().parents[2]
PLUGINS = {"waterbirds": waterbirds, "biased-celeba": biased_celeba, "backgrounds-challenge": backgrounds_challenge, "background-metrics": background_metrics}
REGISTRY = build_registry(extra_plugins=PLUGINS)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def dataset(name: str, root: Path, **options):
    return create("dataset", name, {"root": str(root), "image_size": SIZE, **options}, registry=REGISTRY)


@pytest.fixture(scope="module")
def birds(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A Waterbirds folder of 28 images on plain grey (no noise), so the bar stands out."""
    root = tmp_path_factory.mktemp("waterbirds")
    return root, write_waterbirds(root, 12, 8, 8, image_size=SIZE, noise=0.0, core_contrast=0.3)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    root = tmp_path_factory.mktemp("celeba")
    return root, write_biased_celeba(root, n_train=16, n_test=16, image_size=SIZE, ambiguous=2)


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory) -> tuple[Path, dict[str, list[tuple[str, int]]]]:
    root = tmp_path_factory.mktemp("backgrounds")
    return root, write_backgrounds_challenge(root, per_class=2, image_size=SIZE)


@pytest.fixture
def birds_copy(birds, tmp_path) -> Path:
    """A copy of the Waterbirds folder to damage."""
    return Path(shutil.copytree(birds[0], tmp_path / "waterbirds"))


def rewrite_metadata(root: Path, change) -> None:
    """Apply ``change(rows)`` to ``root/metadata.csv`` (a list of lists, the header first)."""
    with open(root / "metadata.csv", newline="") as file:
        rows = list(csv.reader(file))
    change(rows)
    with open(root / "metadata.csv", "w", newline="") as file:
        csv.writer(file).writerows(rows)


# --- Waterbirds ------------------------------------------------------------------------------------


def test_every_plugin_is_a_builtin_module():
    for module in PLUGINS.values():
        assert module.__name__ in builtin_modules()
    assert {"waterbirds", "biased-celeba", "backgrounds-challenge"} <= set(REGISTRY.names("dataset"))
    assert {"mr", "bg-gap"} <= set(REGISTRY.names("metric"))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_waterbirds_splits_are_the_metadata_rows(birds, split):
    root, rows = birds
    expected = [row for row in rows if row["split"] == SPLIT_CODES[split]]
    found = dataset("waterbirds", root).load(split)
    assert found.ids == tuple(row["img_filename"] for row in expected)
    assert found.labels.tolist() == [row["y"] for row in expected]
    assert found.spurious.tolist() == [row["place"] for row in expected]
    assert found.class_names == ("landbird", "waterbird") and found.spurious_names == ("land", "water")
    assert all(row["img_filename"].startswith(("001.Landbird_sim/", "002.Waterbird_sim/")[row["y"]]) for row in expected)
    images, masks = found.images.all(), found.masks.all()
    assert images.shape == (len(expected), 3, SIZE, SIZE) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    assert masks.shape == (len(expected), SIZE, SIZE) and masks.dtype == torch.bool
    assert found.skipped == 0


def test_waterbirds_masks_are_the_segmentations_and_cover_the_bar(birds):
    root, _ = birds
    exact = dataset("waterbirds", root, resize=SIZE).load("test")  # no resize: pixels as written
    for item, mask in zip(exact.ids, exact.masks.all()):
        written = torch.from_numpy(np.array(Image.open((root / "segmentations" / item).with_suffix(".png")))) > 0
        assert torch.equal(mask, written)
    for split in (exact, dataset("waterbirds", root).load("test")):  # and resized 37 → cropped 32
        deviation = (split.images.all() - 0.5).abs().amax(dim=1)  # grey background: only bar and patch deviate
        masks = split.masks.all()
        for dev, mask in zip(deviation, masks):
            outside = dev[~mask & (dev < 0.33)]  # the corner patch deviates by ≥ 0.4, the bar by ≤ 0.3
            assert float(dev[mask].mean()) > 0.15 and float(outside.mean()) < 0.05
    rows, columns = masks.any(dim=2).sum(dim=1), masks.any(dim=1).sum(dim=1)  # vertical bar = waterbird
    assert torch.equal(rows > columns, split.labels == 1)


def test_waterbirds_has_no_masks_without_segmentations(birds_copy):
    shutil.rmtree(birds_copy / "segmentations")
    assert dataset("waterbirds", birds_copy).load("train").masks is None
    with pytest.raises(DataError, match=r"dataset\.segmentations: .*masks.* is not a folder"):
        dataset("waterbirds", birds_copy, segmentations="masks").load("train")


@pytest.mark.parametrize("augment", [True, False])
def test_augmentation_is_for_training_only_and_can_be_switched_off(birds, augment):
    images = dataset("waterbirds", birds[0], augment=augment).load("train").images
    augmented = images.augmented()
    assert augmented.augmented() is augmented
    if not augment:
        assert augmented is images
        return
    first = augmented.seeded(0)[:4]
    assert augmented.augment and not images.augment and not torch.equal(first, augmented.seeded(1)[:4])
    assert torch.equal(first, augmented.seeded(0)[:4]) and first.shape == images[:4].shape


@pytest.mark.parametrize("name", ["waterbirds", "biased-celeba", "backgrounds-challenge"])
def test_every_loader_keeps_the_dataset_contract(name, birds, faces, backgrounds):
    root = {"waterbirds": birds, "biased-celeba": faces, "backgrounds-challenge": backgrounds}[name][0]
    assert sorted(check_dataset(dataset(name, root)).kept) == sorted(PROMISES["dataset"])


def test_a_missing_root_names_the_option_and_the_folder(tmp_path):
    with pytest.raises(DataError, match=rf"dataset\.root: {tmp_path / 'nowhere'} does not exist") as error:
        dataset("waterbirds", tmp_path / "nowhere")
    assert error.value.field == "dataset.root"
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="is not a folder"):
        dataset("biased-celeba", tmp_path / "file")


def test_resize_must_leave_room_for_the_crop(birds):
    with pytest.raises(CrayonError, match="resize"):
        dataset("waterbirds", birds[0], resize=SIZE - 1)
    assert dataset("waterbirds", birds[0]).resize == 37  # 32 × 256 / 224, as 224 → 256


def test_a_missing_metadata_file_is_named(birds_copy):
    (birds_copy / "metadata.csv").unlink()
    with pytest.raises(DataError, match=rf"{birds_copy / 'metadata.csv'}: file not found"):
        dataset("waterbirds", birds_copy).load("train")


def test_a_missing_column_is_named(birds_copy):
    rewrite_metadata(birds_copy, lambda rows: [row.pop(4) for row in rows])  # place
    with pytest.raises(DataError, match=r"metadata\.csv: line 1: missing column place \(the header has img_id, img_filename, y, split, place_filename\)"):
        dataset("waterbirds", birds_copy).load("train")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [(2, "bird", "y must be an integer, got 'bird'"), (3, "3", "split must be one of 0, 1, 2, got 3"), (4, "-1", "place must be one of 0, 1, got -1")],
)
def test_a_bad_value_names_the_file_and_line(birds_copy, column, value, message):
    rewrite_metadata(birds_copy, lambda rows: rows[5].__setitem__(column, value))
    with pytest.raises(DataError, match=rf"metadata\.csv: line 6: {message}"):
        dataset("waterbirds", birds_copy).load("test")  # every row is checked, whatever the split


def test_a_row_with_the_wrong_number_of_fields_is_named(birds_copy):
    rewrite_metadata(birds_copy, lambda rows: rows[3].pop())
    with pytest.raises(DataError, match=r"metadata\.csv: line 4: 5 fields, the header has 6"):
        dataset("waterbirds", birds_copy).load("train")


def test_a_row_naming_a_missing_image_or_segmentation_is_named(birds_copy, birds):
    rows = birds[1]
    (birds_copy / rows[2]["img_filename"]).unlink()
    with pytest.raises(DataError, match=rf"metadata\.csv: line 4: image {birds_copy / rows[2]['img_filename']} does not exist"):
        dataset("waterbirds", birds_copy).load("train")
    segmentation = (birds_copy / "segmentations" / rows[0]["img_filename"]).with_suffix(".png")
    segmentation.unlink()
    with pytest.raises(DataError, match=rf"line 2: segmentation {segmentation} does not exist"):
        dataset("waterbirds", birds_copy, segmentations=str(birds_copy / "segmentations")).load("train")


def test_a_repeated_row_is_named(birds_copy, birds):
    rewrite_metadata(birds_copy, lambda rows: rows.append(rows[1]))
    first = birds[1][0]
    with pytest.raises(DataError, match=rf"line {len(birds[1]) + 2}: item '{first['img_filename']}' is listed twice \(also at .*line 2\)"):
        dataset("waterbirds", birds_copy).load(["train", "val", "test"][first["split"]])


def test_an_undecodable_image_is_named_or_skipped(birds_copy, birds, capsys):
    first_train = next(row for row in birds[1] if row["split"] == 0)
    broken = birds_copy / first_train["img_filename"]
    broken.write_text("not a JPEG")
    split = dataset("waterbirds", birds_copy).load("train")  # found at load, decoded when read
    with pytest.raises(DataError, match=rf"{broken}: cannot decode the image .*skip_unreadable = true"):
        split.images.all()
    with pytest.raises(DataError, match=rf"^{broken}: cannot decode the image .*skip_unreadable = true"):
        split.with_loading(Loading(num_workers=1)).images.all()  # raised in a decoding process
    skipping = dataset("waterbirds", birds_copy, skip_unreadable=True).load("train")
    assert skipping.skipped == 1 and len(skipping) == len(split) - 1
    assert first_train["img_filename"] not in skipping.ids and skipping.ids == split.ids[1:]
    assert torch.equal(skipping.labels, split.labels[1:]) and len(skipping.masks.all()) == len(skipping)
    assert f"waterbirds train: left out 1 unreadable image ({broken})" in capsys.readouterr().err


def test_an_undecodable_segmentation_is_skipped_with_its_image(birds_copy, birds):
    first_train = next(row for row in birds[1] if row["split"] == 0)
    (birds_copy / "segmentations" / first_train["img_filename"]).with_suffix(".png").write_bytes(b"\x89PNG broken")
    skipping = dataset("waterbirds", birds_copy, skip_unreadable=True).load("train")
    assert skipping.skipped == 1 and first_train["img_filename"] not in skipping.ids


def test_a_split_left_empty_is_an_error_naming_the_root(birds_copy, birds):
    for row in birds[1]:
        if row["split"] == 2:
            (birds_copy / row["img_filename"]).write_text("not a JPEG")
    with pytest.raises(DataError, match=rf"dataset.root: {birds_copy}: the test split of 'waterbirds' is empty: all \d+ of its images are unreadable"):
        dataset("waterbirds", birds_copy, skip_unreadable=True).load("test")


# --- Biased CelebA ---------------------------------------------------------------------------------


def kept(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["Black_Hair"] != row["Blond_Hair"]]


def test_celeba_reads_smiling_and_black_hair_and_drops_ambiguous_hair(faces):
    root, rows = faces
    data = dataset("biased-celeba", root)
    train = data.load("train")
    assert train.ids == tuple(row["Filename"] for row in kept(rows["train"]))
    assert train.labels.tolist() == [row["Smiling"] for row in kept(rows["train"])]
    assert train.spurious.tolist() == [row["Black_Hair"] for row in kept(rows["train"])]
    assert train.masks is None and train.class_names == ("not smiling", "smiling") and train.spurious_names == ("blond", "black hair")
    assert data.dropped == {CELEBA_FILES["train"]: 2}
    val, test = data.load("val"), data.load("test")
    assert data.dropped[CELEBA_FILES["test"]] == 2
    assert not set(val.ids) & set(test.ids)
    assert sorted(val.ids + test.ids) == sorted(row["Filename"] for row in kept(rows["test"]))
    assert val.missing_groups() == [] and len(val) == 4  # a seeded 10 % of each group, at least one
    assert dataset("biased-celeba", root, val_seed=1).load("val").ids != val.ids


def test_celeba_reads_a_validation_file_and_the_attribute_table_layout(tmp_path):
    rows = write_biased_celeba(tmp_path, n_train=8, n_val=4, n_test=4, image_size=SIZE, ambiguous=0)
    header, *body = (tmp_path / CELEBA_FILES["train"]).read_text().splitlines()
    table = [str(len(body)), " ".join(header.split()[1:])]  # list_attr_celeba.txt: a count, no "Filename", −1 / 1
    table += [f"{fields[0]}  " + " ".join("-1" if v == "0" else "1" for v in fields[1:]) for fields in map(str.split, body)]
    (tmp_path / "list_attr_train.txt").write_text("\n".join(table) + "\n")
    data = dataset("biased-celeba", tmp_path, val=CELEBA_FILES["val"], train="list_attr_train.txt")
    assert data.load("val").ids == tuple(row["Filename"] for row in rows["val"])
    assert data.load("test").ids == tuple(row["Filename"] for row in rows["test"])
    train = data.load("train")
    assert train.labels.tolist() == [row["Smiling"] for row in rows["train"]]
    assert train.spurious.tolist() == [row["Black_Hair"] for row in rows["train"]]
    (tmp_path / "list_attr_train.txt").write_text("\n".join(["99", *table[1:]]) + "\n")
    with pytest.raises(DataError, match=r"list_attr_train\.txt: line 1 announces 99 rows, the file has 8"):
        dataset("biased-celeba", tmp_path, train="list_attr_train.txt").load("train")


def damage_celeba(root: Path, line: int, change) -> Path:
    path = root / CELEBA_FILES["train"]
    lines = path.read_text().splitlines()
    lines[line - 1] = change(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda line: line.rsplit(" ", 1)[0], "line 3: 40 fields, the header has 41"),
        (lambda line: " ".join(line.split()[:32] + ["2"] + line.split()[33:]), "line 3: Smiling must be one of -1, 0, 1, got 2"),
        (lambda line: " ".join(line.split()[:9] + ["yes"] + line.split()[10:]), "line 3: Black_Hair must be an integer, got 'yes'"),
        (lambda line: "missing.jpg " + line.split(" ", 1)[1], "line 3: image .*img_align_celeba/missing.jpg does not exist"),
    ],
)
def test_celeba_errors_name_the_file_and_line(faces, tmp_path, change, message):
    root = Path(shutil.copytree(faces[0], tmp_path / "celeba"))
    path = damage_celeba(root, 3, change)
    with pytest.raises(DataError, match=rf"{path}: {message}"):
        dataset("biased-celeba", root).load("train")


def test_celeba_names_a_missing_file_or_column(faces, tmp_path):
    root = Path(shutil.copytree(faces[0], tmp_path / "celeba"))
    with pytest.raises(DataError, match=rf"{root / 'nope.csv'}: file not found"):
        dataset("biased-celeba", root, test="nope.csv").load("test")
    path = damage_celeba(root, 1, lambda line: line.replace("Smiling", "Grinning"))
    with pytest.raises(DataError, match=rf"{path}: line 1: missing column Smiling"):
        dataset("biased-celeba", root).load("train")
    assert CELEBA_ATTRIBUTES[31] == "Smiling" and len(CELEBA_ATTRIBUTES) == 40


# --- Backgrounds Challenge ------------------------------------------------------------------------


def test_backgrounds_challenge_reads_its_folders(backgrounds):
    root, written = backgrounds
    data = dataset("backgrounds-challenge", root)
    train = data.load("train")
    assert list(zip(train.ids, train.labels.tolist())) == written["original/train"]
    assert train.class_names == tuple(name[3:] for name in IN9_CLASSES) and train.class_names[2] == "wheeled vehicle"
    assert train.spurious_names == ("any",) and not train.spurious.any() and train.masks is None
    assert train.group_names[:2] == ("dog/any", "bird/any")
    val, test = data.load("val"), data.load("test")
    assert not set(val.ids) & set(test.ids)
    assert sorted(zip(val.ids + test.ids, val.labels.tolist() + test.labels.tolist())) == sorted(written["original/val"])
    assert torch.bincount(val.labels).tolist() == [1] * 9  # a seeded share of each class, at least one
    assert data.evaluation_splits == ("mixed_same", "mixed_rand", "only_fg")
    for split in data.evaluation_splits:
        found = data.load(split)
        assert list(zip(found.ids, found.labels.tolist())) == written[f"{split}/val"]


def test_backgrounds_challenge_names_a_missing_or_mismatched_folder(backgrounds, tmp_path):
    root = Path(shutil.copytree(backgrounds[0], tmp_path / "bg"))
    shutil.rmtree(root / "only_fg")
    with pytest.raises(DataError, match=rf"{root / 'only_fg' / 'val'}: folder not found"):
        dataset("backgrounds-challenge", root).load("only_fg")
    (root / "mixed_rand" / "val" / "08_fish").rename(root / "mixed_rand" / "val" / "08_fishes")
    with pytest.raises(DataError, match=r"mixed_rand/val: class folders .*08_fishes differ from .*original/train's: .*08_fish$"):
        dataset("backgrounds-challenge", root).load("mixed_rand")
    with pytest.raises(ValueError, match="split must be one of train, val, test, mixed_same, mixed_rand, only_fg, got 'mixed'"):
        dataset("backgrounds-challenge", root).load("mixed")


def hand_made_predictions(backgrounds) -> Predictions:
    """On 9 classes × 2 images per split: right on 7 of the 18 mixed_rand images, 12 of the 18
    mixed_same, 18 of the 18 only_fg."""
    data = dataset("backgrounds-challenge", backgrounds[0])
    test = data.load("test")

    def predicted(split: str, correct: int):
        found = data.load(split)
        guesses = found.labels.clone()
        guesses[correct:] = (guesses[correct:] + 1) % 9
        return Predictions(found, guesses, test.group_shares())

    others = {"mixed_rand": predicted("mixed_rand", 7), "mixed_same": predicted("mixed_same", 12), "only_fg": predicted("only_fg", 18)}
    return Predictions(test, test.labels, test.group_shares(), others=others)


def test_mr_and_bg_gap_against_hand_counts(backgrounds):
    predictions = hand_made_predictions(backgrounds)
    metrics = {name: create("metric", name, registry=REGISTRY) for name in ("mr", "bg-gap")}
    assert metrics["mr"].compute(predictions) == {"mr": pytest.approx(7 / 18)}
    assert metrics["bg-gap"].compute(predictions) == {"bg_gap": pytest.approx(12 / 18 - 7 / 18)}
    for metric in metrics.values():
        assert sorted(check_metric(metric, predictions).kept) == sorted(PROMISES["metric"])


def test_mr_without_the_evaluation_splits_is_a_clear_error(backgrounds):
    predictions = hand_made_predictions(backgrounds)
    bare = Predictions(predictions.split, predictions.predicted, predictions.train_group_shares, others={"only_fg": predictions.others["only_fg"]})
    with pytest.raises(CrayonError, match=r"metric 'bg-gap' needs predictions on the evaluation split 'mixed_same' .*backgrounds-challenge.*; this run's dataset has: only_fg"):
        create("metric", "bg-gap", registry=REGISTRY).compute(bare)
    empty = Predictions(predictions.split, predictions.predicted, predictions.train_group_shares)
    with pytest.raises(CrayonError, match="has: none"):
        create("metric", "mr", registry=REGISTRY).compute(empty)


def test_mr_on_an_empty_split_is_nan(backgrounds):
    predictions = hand_made_predictions(backgrounds)
    none = torch.zeros(0, dtype=torch.int64)
    split = ImageSet(torch.zeros(0, 3, SIZE, SIZE), none, none, None, (), predictions.split.class_names, ("any",))
    others = {"mixed_rand": Predictions(split, none, predictions.train_group_shares)}
    found = background_metrics.MixedRandAccuracy().compute(Predictions(predictions.split, predictions.predicted, predictions.train_group_shares, others=others))
    assert math.isnan(found["mr"])


# --- tables, the hold-out, the generator script ----------------------------------------------------

names = st.text(st.characters(codec="ascii", categories=["L", "N"], include_characters="._/- "), min_size=1, max_size=20).filter(lambda s: s.strip() == s)


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(1, 10**6), names, st.integers(0, 1), st.integers(0, 2), st.integers(0, 1)), max_size=20))
def test_metadata_round_trips_through_read_csv(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("csv") / "metadata.csv"
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([waterbirds.COLUMNS, *rows])
    found = read_csv(path, waterbirds.COLUMNS)
    assert [row.line for row in found] == list(range(2, len(rows) + 2))
    assert [(int(r.values["img_id"]), r.values["img_filename"], r.integer("y", (0, 1)), r.integer("split", (0, 1, 2)), r.integer("place", (0, 1))) for r in found] == rows


@settings(max_examples=100, deadline=None)
@given(strata=st.lists(st.integers(0, 3), max_size=40), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**31))
def test_hold_out_takes_a_share_of_every_stratum(strata, fraction, seed):
    held = hold_out(strata, fraction, seed)
    assert held == hold_out(strata, fraction, seed) and len(held) == len(strata)
    for stratum in set(strata):
        n = strata.count(stratum)
        k = sum(h for h, s in zip(held, strata) if s == stratum)
        assert k == (min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0)


def test_the_generator_script_writes_a_loadable_folder(tmp_path):
    spec = importlib.util.spec_from_file_location("make_waterbirds", REPOSITORY / "benchmarks" / "make_waterbirds.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(tmp_path / "wb"), "--n", "24", "--size", "32", "--seed", "3"])
    assert script.split_sizes(11788) == (4795, 1199, 5794)
    data = dataset("waterbirds", tmp_path / "wb")
    assert [len(data.load(split)) for split in ("train", "val", "test")] == list(script.split_sizes(24))
    assert data.load("train").masks is not None
