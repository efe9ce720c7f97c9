"""The README's walk-through, end to end: a folder of class sub-folders without masks, the user's own
network from a file outside the package and its checkpoint, people's answers given through the
annotation page, ``crayon run``, ``crayon export``, and the corrected model loaded in plain torch."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import crayon_plugins
from crayon_plugins.annotation.records import Question
from crayon_plugins.annotation.server import create_app
from crayon_plugins.cli import _task, app
from crayon_plugins.testing.user_folders import write_image_folder

NET = """
from torch import nn


def build(num_classes=1000):
    net = nn.Sequential()
    net.layer1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    net.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.flatten = nn.Flatten()
    net.fc = nn.Linear(16, num_classes)
    return net
"""

RUN_TOML = """
refiners = ["crayon-attention"]
metrics = ["accuracy", "group-accuracy"]

[dataset]
name = "image-folder"
root = "images"
image_size = 32

[backbone]
name = "module"
factory = "models/net.py:build"
target_layer = "layer2"
image_size = 32

[original]
checkpoint = "net.pt"

[annotator]
name = "human"
answers = ["annotation/maps/answers.jsonl"]

[refiner.crayon-attention]
epochs = 1
"""

PREDICT = """
import sys
import safetensors.torch, torch
sys.path.insert(0, "models")
from net import build

folder = "runs/mine/models/crayon-attention"
import json
card = json.load(open(f"{folder}/card.json"))
net = build(num_classes=len(card["classes"])).eval()
net.load_state_dict(safetensors.torch.load_file(f"{folder}/weights.safetensors"))
mask = torch.ones(card["channels"])
mask[card["pruned_neurons"]] = 0
net.layer2.register_forward_hook(lambda module, inputs, output: output * mask.view(1, -1, 1, 1))
mean, std = (torch.tensor(card["input"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
images = safetensors.torch.load_file("images.safetensors")["images"]
with torch.no_grad():
    logits = net((images - mean) / std)
assert not any(name.startswith("crayon") for name in sys.modules)
safetensors.torch.save_file({"logits": logits.contiguous()}, "logits.safetensors")
"""


@pytest.mark.slow
def test_your_folder_and_your_model_to_an_exported_corrected_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image_folder("images", per_class=12, classes=("cat", "dog"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(textwrap.dedent(NET))
    sys.path.insert(0, str(tmp_path / "models"))
    try:
        from net import build
    finally:
        sys.path.remove(str(tmp_path / "models"))
        sys.modules.pop("net", None)
    torch.manual_seed(0)
    torch.save(build(num_classes=2).state_dict(), "net.pt")  # the user's checkpoint
    (tmp_path / "run.toml").write_text(RUN_TOML)

    # People answer in the page (crayon annotate serve -c run.toml); here through its HTTP API.
    _, task = _task(Path("run.toml"), Question.MAPS, None)  # what the page serves, in annotation/maps
    client = TestClient(create_app(task, "http://testserver"))
    for i, item in enumerate(task.items):
        response = client.post("/api/answer", json={"annotator": "alice", "item": item.item, "position": i, "revision": i, "answer": ("yes", "no", "maybe")[i % 3]})
        assert response.status_code == 200, response.text

    runner = CliRunner()
    result = runner.invoke(app, ["run", "-c", "run.toml", "--out", "runs/mine"])
    assert result.exit_code == 0, result.output
    assert "original model: loaded from net.pt" in result.output
    written = json.loads((tmp_path / "runs/mine/results.json").read_text())
    assert sum(written["annotations"].values()) == len(task.items)
    assert "worst_class_accuracy" in written["rows"][1]["metrics"] and "wga" not in written["rows"][1]["metrics"]
    result = runner.invoke(app, ["export", "runs/mine/models/crayon-attention", "--format", "onnx"])
    assert result.exit_code == 0, result.output

    # The corrected model, in plain torch with the user's own code, in a fresh process.
    model = crayon_plugins.load_model("runs/mine/models/crayon-attention")
    images = torch.rand(5, 3, 32, 32)
    safetensors.torch.save_file({"images": images}, "images.safetensors")
    (tmp_path / "predict.py").write_text(textwrap.dedent(PREDICT))
    subprocess.run([sys.executable, "predict.py"], check=True, env={**os.environ, "PYTHONPATH": ""})
    logits = safetensors.torch.load_file("logits.safetensors")["logits"]
    with torch.no_grad():
        assert torch.allclose(logits, model(images), atol=1e-5, rtol=0)
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession("runs/mine/models/crayon-attention/model.onnx")
    assert abs(session.run(["logits"], {"images": images.numpy()})[0] - logits.numpy()).max() < 1e-4


def test_a_folder_without_masks_and_the_default_annotator_is_refused_before_any_work(tmp_path, monkeypatch):
    """Refused before the original model is trained, naming every setting that would fix it."""
    import crayon_plugins.run.stages.original as original

    write_image_folder(tmp_path / "images", per_class=4)
    monkeypatch.setattr(original, "fit", lambda *a, **k: pytest.fail("trained before refusing"))
    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "out"), "dataset.name=image-folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=32"])
    assert result.exit_code == 2, result.output
    assert "annotator: 'saliency-oracle' needs object masks, which dataset 'image-folder' does not have" in result.output
    assert '[annotator] name = "human"' in result.output
    assert "evaluation.judge: 'saliency-oracle' needs object masks" in result.output and 'drop "reasonability" from metrics' in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "out"), "-r", "group-balanced", "dataset.name=image-folder", f"dataset.root={tmp_path / 'images'}", 'metrics=["accuracy"]', "selection.rule=val-wga"])
    assert result.exit_code == 2
    assert "refiners: 'group-balanced' needs a group attribute" in result.output and 'set [selection] rule = "val-accuracy"' in result.output
