"""The top-patches concept extractor, its patch boxes, the concept sheets and `crayon concepts`."""

import pytest
import torch
from crayon_plugins.plugins.concepts.top_patches import patch_boxes
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import tiny_pipeline
from typer.testing import CliRunner

from crayon_plugins import create_concept_extractor, create_dataset
from crayon_plugins.cli import app
from crayon_plugins.errors import ConfigError
from crayon_plugins.run.stages.explain import concepts
from crayon_plugins.run.stages.original import original_model


@pytest.fixture(scope="module")
def train():
    return create_dataset("spurious-bars", {"n_train": 40, "image_size": 32}).load("train")


def test_top_patches_are_each_neurons_strongest_images_and_their_arg_max_cells(tiny_model, train):
    concepts = create_concept_extractor("top-patches", {"k": 5, "batch_size": 16}).extract(tiny_model, train)
    with torch.no_grad():
        features = tiny_model.features(train.images.all())  # (40, 128, 4, 4)
    peaks = features.amax(dim=(2, 3))
    assert concepts.grid == (4, 4) and concepts.image_size == (32, 32) and len(concepts) == 128
    torch.testing.assert_close(concepts.activations, peaks)
    assert torch.equal(concepts.top_images, peaks.topk(5, dim=0).indices.T)
    torch.testing.assert_close(concepts.top_activations, peaks.topk(5, dim=0).values.T)
    for c in (0, 64, 127):
        for j, image in enumerate(concepts.top_images[c].tolist()):
            row, col = concepts.cells[c, j].tolist()
            assert features[image, c, row, col] == peaks[image, c]
    assert concepts.neuron_ids[7] == "neuron-0007"


def test_k_larger_than_the_training_split_names_the_field(tiny_model, train):
    with pytest.raises(ConfigError, match=r"concepts.k: 41 images per neuron, but the training split has 40"):
        create_concept_extractor("top-patches", {"k": 41}).extract(tiny_model, train)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), h=st.integers(1, 8), w=st.integers(1, 8), scale=st.integers(1, 8), context=st.integers(0, 3))
def test_patch_boxes_hold_their_cell_and_stay_inside_the_image(data, h, w, scale, context):
    row, col = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    height, width = h * scale, w * scale
    top, left, bottom, right = patch_boxes(torch.tensor([row, col]), (h, w), (height, width), context).tolist()
    assert 0 <= top <= row * scale and (row + 1) * scale <= bottom <= height
    assert 0 <= left <= col * scale and (col + 1) * scale <= right <= width
    if context <= row < h - context and context <= col < w - context:  # not clipped by the border
        assert bottom - top == right - left == (2 * context + 1) * scale


def test_concepts_are_cached_with_the_model(tmp_path, monkeypatch):
    pipeline = tiny_pipeline(tmp_path)
    train = pipeline.dataset.load("train")
    model = original_model(pipeline, train).model
    first = concepts(pipeline, model, train)
    again = tiny_pipeline(tmp_path)
    monkeypatch.setattr(again.concept_extractor, "extract", lambda *_: pytest.fail("extracted again instead of loading from the cache"))
    second = concepts(again, model, train)
    assert len(list(pipeline.cache.root.rglob("concepts/*.pt"))) == 1
    assert torch.equal(first.top_images, second.top_images) and first.neuron_ids == second.neuron_ids


def tiny_config(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[dataset]\nname = "spurious-bars"\nn_train = 192\nn_test = 64\nimage_size = 32\n'
        '[training]\nepochs = 1\n[concepts]\nk = 10\n'
    )
    return config


def test_crayon_concepts_renders_a_sheet_per_chosen_neuron_and_an_index(tmp_path):
    out = tmp_path / "sheets"
    result = CliRunner().invoke(app, ["concepts", "--config", str(tiny_config(tmp_path)), "--out", str(out), "--neurons", "3,40"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["index.md", "neuron-0003.png", "neuron-0040.png"]
    assert (out / "neuron-0003.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in (out / "index.md").read_text().splitlines() if line.startswith("| neuron-")]
    assert len(rows) == 2 and all("(neuron-00" in row for row in rows)


def test_crayon_concepts_rejects_a_neuron_the_model_lacks(tmp_path):
    result = CliRunner().invoke(app, ["concepts", "--config", str(tiny_config(tmp_path)), "--out", str(tmp_path / "o"), "--neurons", "128"])
    assert result.exit_code == 2 and "the model has neurons 0 to 127, not [128]" in result.output
    assert not (tmp_path / "o").exists()
