"""Saved models: every method's model is written with its card, loads back in crayon-plugins and in
plain timm / torch, and exports to torch.export and ONNX with the same outputs."""

import json
import pickle
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from crayon_plugins import ConfigError, CrayonError, Pipeline, load_model
from crayon_plugins.cli import app
from crayon_plugins.config import RunConfig
from crayon_plugins.model.saved import CARD, WEIGHTS, export_model, read_card
from crayon_plugins.run.cache import ArtefactCache

TINY = {
    "dataset": {"name": "spurious-bars", "n_train": 128, "n_test": 32, "image_size": 32},
    "training": {"epochs": 1, "batch_size": 64},
    "refiners": ["crayon-attention", "crayon-pruning"],
    "refiner": {"crayon-attention": {"epochs": 1}, "crayon-pruning": {"max_pruned": 1.0}},
}

PLAIN_TIMM = """
import json, sys
import safetensors.torch, timm, torch

folder, inputs = sys.argv[1], sys.argv[2]
card = json.load(open(f"{folder}/card.json"))
weights = safetensors.torch.load_file(f"{folder}/weights.safetensors")
build = card["build"]
net = timm.create_model(**build["create_model"]).eval()
mean = torch.tensor(card["input"]["mean"]).view(1, 3, 1, 1)
std = torch.tensor(card["input"]["std"]).view(1, 3, 1, 1)
mask = torch.ones(card["channels"])
mask[card["pruned_neurons"]] = 0
mask = mask.view(1, -1, 1, 1)
x = (safetensors.torch.load_file(inputs)["images"] - mean) / std
with torch.no_grad():
    if "head" in build:  # cut after a feature stage: global average pooling and a linear head
        net.load_state_dict({k: v for k, v in weights.items() if not k.startswith("classifier.")})
        head = torch.nn.Linear(*weights["classifier.weight"].shape[::-1])
        head.load_state_dict({"weight": weights["classifier.weight"], "bias": weights["classifier.bias"]})
        logits = head((net(x)[-1] * mask).mean(dim=(2, 3)))
    else:
        net.load_state_dict(weights)
        logits = net.forward_head(net.forward_features(x) * mask)
assert not any(name.startswith("crayon") for name in sys.modules), "crayon was imported"
safetensors.torch.save_file({"logits": logits.contiguous()}, sys.argv[3])
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with its models saved under ``out/models``; ``(out, results, test images)``."""
    root = tmp_path_factory.mktemp("saved")
    pipeline = Pipeline.from_config(RunConfig.model_validate(TINY), cache=ArtefactCache(root / "cache"))
    results = pipeline.run(root / "out", observers=None)
    test = pipeline.dataset.load("test")
    return root / "out", results, test.images[torch.arange(len(test))]


def test_every_method_is_saved_with_its_card(run):
    out, results, _ = run
    assert sorted(p.name for p in (out / "models").iterdir()) == ["crayon-attention", "crayon-pruning", "original"]
    card = read_card(out / "models" / "crayon-attention")
    assert card.method == "crayon-attention" and card.seed == 0
    assert card.classes == results.classes and len(card.classes) == 2
    assert card.input.size == (32, 32)
    assert card.refiner["name"] == "crayon-attention" and card.refiner["options"]["epochs"] == 1
    assert card.refiner["options"]["w_no"] == results.run["components"]["refiners"]["crayon-attention"]["options"]["w_no"]
    assert card.metrics == results.row("crayon-attention").metrics
    assert sum(card.annotations["maps"].values()) == 128
    assert card.selection == {"rule": "val-accuracy", "epoch": 1}
    assert {"torch", "timm", "python"} <= set(card.versions)
    pruning = read_card(out / "models" / "crayon-pruning")
    assert len(pruning.pruned_neurons) == results.row("crayon-pruning").details["neurons_pruned"]
    assert "neurons" in pruning.annotations and "maps" not in pruning.annotations
    assert read_card(out / "models" / "original").refiner is None


@pytest.mark.parametrize("method", ["original", "crayon-attention", "crayon-pruning"])
def test_a_saved_model_loads_back_with_the_same_outputs(run, method):
    out, results, images = run
    loaded = load_model(out / "models" / method)
    with torch.no_grad():
        assert torch.equal(loaded(images), results.models[method](images))
    assert torch.equal(loaded.neuron_mask, results.models[method].neuron_mask)
    assert loaded.card.method == method


@pytest.mark.parametrize("method", ["original", "crayon-pruning"])
def test_plain_timm_in_a_fresh_process_reproduces_the_predictions(run, method, tmp_path):
    """The card and weights alone rebuild the model with timm and torch, without importing crayon."""
    out, results, images = run
    safetensors.torch.save_file({"images": images.contiguous()}, tmp_path / "images.safetensors")
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(PLAIN_TIMM))
    subprocess.run([sys.executable, str(script), str(out / "models" / method), str(tmp_path / "images.safetensors"), str(tmp_path / "logits.safetensors")], check=True, cwd=tmp_path)
    logits = safetensors.torch.load_file(tmp_path / "logits.safetensors")["logits"]
    with torch.no_grad():
        expected = results.models[method](images)
    assert torch.equal(logits.argmax(dim=1), expected.argmax(dim=1))
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0)


def test_torch_and_onnx_exports_agree_with_the_model(run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out, results, images = run
    folder = out / "models" / "crayon-pruning"
    with torch.no_grad():
        expected = results.models["crayon-pruning"](images)
    program = torch.export.load(str(export_model(folder, "torch", tmp_path / "m.pt2"))).module()
    with torch.no_grad():
        assert torch.allclose(program(images), expected, atol=1e-6, rtol=0)
    session = onnxruntime.InferenceSession(str(export_model(folder, "onnx", tmp_path / "m.onnx")))
    logits = session.run(["logits"], {"images": images[:5].numpy()})[0]  # another batch size than exported with
    assert abs(logits - expected[:5].numpy()).max() < 1e-4


def test_crayon_export_writes_the_file_it_names(run, tmp_path):
    out, _, _ = run
    result = CliRunner().invoke(app, ["export", str(out / "models" / "original"), "--format", "safetensors", "--out", str(tmp_path / "w.safetensors")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "w.safetensors").read_bytes() == (out / "models" / "original" / WEIGHTS).read_bytes()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "nowhere"), "--format", "onnx"])
    assert result.exit_code == 2 and "no such model folder" in result.output


class Detonator:
    """Unpickling this creates ``path``: proof that a file was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_crafted_weights_file_is_never_unpickled(run, tmp_path):
    out, _, _ = run
    folder = tmp_path / "crafted"
    folder.mkdir()
    card = json.loads((out / "models" / "original" / CARD).read_text())
    proof = tmp_path / "ran"
    (folder / WEIGHTS).write_bytes(pickle.dumps(Detonator(proof)))
    import hashlib

    card["weights_sha256"] = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    (folder / CARD).write_text(json.dumps(card))
    with pytest.raises(CrayonError):
        load_model(folder)
    assert not proof.exists()


def test_bad_model_folders_name_what_is_wrong(run, tmp_path):
    out, _, _ = run
    with pytest.raises(ConfigError, match="no such model folder"):
        load_model(tmp_path / "missing")
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ConfigError, match="no model card"):
        load_model(folder)
    card = json.loads((out / "models" / "original" / CARD).read_text())
    (folder / CARD).write_text(json.dumps({**card, "format": 99}))
    with pytest.raises(ConfigError, match="format 99"):
        load_model(folder)
    (folder / CARD).write_text(json.dumps({**card, "classes": []}))
    with pytest.raises(ConfigError, match="classes"):
        load_model(folder)
    (folder / CARD).write_text(json.dumps(card))
    (folder / WEIGHTS).write_bytes((out / "models" / "crayon-pruning" / WEIGHTS).read_bytes())
    with pytest.raises(ConfigError, match="SHA-256"):
        load_model(folder)


def test_saved_weights_serve_as_the_original_checkpoint_of_a_next_run(run):
    """``[original] checkpoint = …/models/crayon-attention/weights.safetensors`` starts the next run
    from the corrected model (the default backbone is cut after a feature stage)."""
    from crayon_plugins import create_backbone
    from crayon_plugins.model.checkpoints import load_checkpoint

    out, results, images = run
    fresh = create_backbone("timm").build(2).eval()
    load_checkpoint(fresh, out / "models" / "crayon-attention" / WEIGHTS)
    with torch.no_grad():
        assert torch.equal(fresh(images), results.models["crayon-attention"](images))
