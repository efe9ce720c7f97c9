"""Users' weights: checkpoints of the original model, and local pretrained backbones (nothing downloads)."""

import builtins
import hashlib
import pickle
import socket

import numpy as np
import pytest
import safetensors.torch
import timm
import timm.models._builder
import torch
import torchvision
from PIL import Image

from crayon_plugins import ConfigError, create_backbone
from crayon_plugins.model.checkpoints import file_digest, load_checkpoint

PLAUSIBLE = {
    698: "palace",
    663: "monastery",
    832: "stupa",
    442: "bell cote",
    497: "church",
    668: "mosque",
    449: "boathouse",
    538: "dome",
    483: "castle",
}
"""ImageNet classes that fit scikit-learn's china.jpg (a Chinese temple)."""


def whole(model: str = "resnet18", **params):
    return create_backbone("timm", {"model": model, "feature_stage": "whole", **params})


def logits(model, images):
    with torch.no_grad():
        return model.eval()(images)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt of timm to fetch weights, or of anything to open a connection, fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    for name in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file", "load_custom_from_hf"):
        monkeypatch.setattr(timm.models._builder, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_torchvision_and_timm_resnets_share_every_name_and_shape():
    for name in ("resnet18", "resnet50"):
        theirs, ours = getattr(torchvision.models, name)().state_dict(), timm.create_model(name).state_dict()
        assert list(theirs) == list(ours)
        assert all(theirs[key].shape == ours[key].shape for key in theirs)


def test_torchvision_resnet_checkpoint_gives_its_logits(tmp_path):
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=2)
    torch.save(network.state_dict(), tmp_path / "model.pt")
    model = whole().build(2)
    load_checkpoint(model, tmp_path / "model.pt")
    images = torch.rand(3, 3, 64, 64)
    expected = logits(network, (images - model.mean) / model.std)
    assert torch.allclose(logits(model, images), expected, atol=1e-5)
    assert model.classifier is model.body.fc and torch.equal(model.classifier.weight, network.fc.weight)


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_file_and_the_tensor(tmp_path):
    state = torchvision.models.resnet18(num_classes=2).state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, :2] = torch.tensor([float("nan"), float("inf")])
    torch.save(state, tmp_path / "diverged.pt")
    with pytest.raises(ConfigError, match=r"original\.checkpoint: .*diverged\.pt: layer2\.0\.conv1\.weight holds 2 NaN or infinite values of 73728"):
        load_checkpoint(whole().build(2), tmp_path / "diverged.pt")


def test_timm_checkpoint_wrapped_and_from_data_parallel_gives_its_logits(tmp_path):
    torch.manual_seed(1)
    network = timm.create_model("resnet18", num_classes=2)
    state = {f"module.{key}": value for key, value in network.state_dict().items()}
    torch.save({"epoch": 3, "model_state_dict": state}, tmp_path / "checkpoint.pth")
    model = whole().build(2)
    load_checkpoint(model, tmp_path / "checkpoint.pth")
    images = torch.rand(2, 3, 64, 64)
    assert torch.allclose(logits(model, images), logits(network, (images - model.mean) / model.std), atol=1e-5)


def test_own_state_dict_of_a_cut_and_pruned_model_loads_whole(tmp_path):
    torch.manual_seed(2)
    trained = create_backbone("timm", {}).build(3)
    trained.feature_map.mask[::4] = 0
    safetensors.torch.save_file(trained.state_dict(), tmp_path / "model.safetensors")
    model = create_backbone("timm", {}).build(3)
    load_checkpoint(model, tmp_path / "model.safetensors")
    assert torch.equal(model.neuron_mask, trained.neuron_mask)
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(logits(model, images), logits(trained, images))


def test_own_state_dict_without_our_buffers_keeps_them(tmp_path):
    trained = whole("resnet10t").build(2)
    state = {
        key: value for key, value in trained.state_dict().items() if key not in ("mean", "std", "feature_map.mask")
    }
    torch.save({"state_dict": state}, tmp_path / "model.pt")
    model = whole("resnet10t").build(2)
    load_checkpoint(model, tmp_path / "model.pt")
    assert torch.equal(model.classifier.weight, trained.classifier.weight)
    assert torch.equal(model.neuron_mask, torch.ones(512))


def test_bare_network_into_a_cut_backbone_says_to_set_feature_stage_whole(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), tmp_path / "resnet.pt")
    model = create_backbone("timm", {"model": "resnet18", "feature_stage": 2}).build(2)
    with pytest.raises(ConfigError, match=r"original\.checkpoint: .*resnet\.pt .*set backbone\.feature_stage = \"whole\""):
        load_checkpoint(model, tmp_path / "resnet.pt")


def test_another_architecture_names_missing_unexpected_and_mismatched_keys(tmp_path):
    torch.save(torchvision.models.resnet34(num_classes=5).state_dict(), tmp_path / "resnet34.pt")
    with pytest.raises(ConfigError) as error:
        load_checkpoint(whole().build(2), tmp_path / "resnet34.pt", where="original.checkpoint")
    message = str(error.value)
    assert message.startswith(f"original.checkpoint: {tmp_path / 'resnet34.pt'} does not fit the model")
    assert "96 unexpected key(s) the model lacks: body.layer1.2.conv1.weight" in message
    assert "body.fc.weight (file 5×512, model 2×512)" in message
    assert "the file's classifier has 5 classes, the model's 2" in message
    assert error.value.field == "original.checkpoint"

    state = torchvision.models.resnet18(num_classes=2).state_dict()
    del state["layer4.1.conv2.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ConfigError, match=r"missing 1 key\(s\) the model has: body\.layer4\.1\.conv2\.weight$"):
        load_checkpoint(whole().build(2), tmp_path / "partial.pt")


def test_files_that_are_not_checkpoints_name_the_file(tmp_path):
    model = whole("resnet10t").build(2)
    (tmp_path / "notes.pt").write_text("hello")
    (tmp_path / "folder").mkdir()
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_weights.pt")
    cases = {
        "missing.pt": r"missing\.pt: no such checkpoint file",
        "folder": r"folder: is a folder, not a checkpoint file",
        "notes.pt": r"notes\.pt is not a checkpoint \(.*\); only tensors are loaded \(torch\.load weights_only=True\)",
        "no_weights.pt": r"no_weights\.pt: not a state dict",
    }
    for name, pattern in cases.items():
        with pytest.raises(ConfigError, match=rf"^original\.checkpoint: .*{pattern}"):
            load_checkpoint(model, tmp_path / name)


class _Payload:
    """Unpickling it would run code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    model = whole("resnet10t").build(2)
    zipped, raw = tmp_path / "evil.pt", tmp_path / "evil.pkl"
    torch.save({"conv1.0.weight": torch.zeros(1), "payload": _Payload(tmp_path / "ran-zip")}, zipped)
    raw.write_bytes(pickle.dumps({"state_dict": _Payload(tmp_path / "ran-raw")}, protocol=2))
    for path in (zipped, raw):
        with pytest.raises(ConfigError, match=rf"{path.name} holds objects other than tensors .*weights_only=True"):
            load_checkpoint(model, path)
    assert not (tmp_path / "ran-zip").exists() and not (tmp_path / "ran-raw").exists()
    pickle.loads(raw.read_bytes())  # the payload is real: plain unpickling runs it
    assert (tmp_path / "ran-raw").exists()


def test_pretrained_without_weights_fails_fast_offline_and_says_where_to_get_them(offline):
    with pytest.raises(AssertionError, match="network"):  # the guard holds: timm itself would fetch
        timm.create_model("resnet18", pretrained=True)
    with pytest.raises(ConfigError) as error:
        whole(pretrained=True).build(2)
    message = str(error.value)
    assert message.startswith("backbone.pretrained: no pretrained weights for 'resnet18' ship with crayon-plugins")
    assert 'backbone.weights = "path/to/resnet18.safetensors"' in message
    assert "https://huggingface.co/timm/resnet18" in message
    with pytest.raises(ConfigError, match=r"^backbone\.weights: set backbone\.pretrained = true"):
        whole(weights="resnet18.safetensors").build(2)


def test_local_weights_initialise_whole_and_cut_backbones_with_a_fresh_head(tmp_path, offline):
    torch.manual_seed(3)
    network = timm.create_model("resnet10t").eval()  # 1000 classes
    safetensors.torch.save_file(network.state_dict(), tmp_path / "resnet10t.safetensors")
    params = {"model": "resnet10t", "pretrained": True, "weights": str(tmp_path / "resnet10t.safetensors")}
    images = torch.rand(2, 3, 64, 64)

    same = create_backbone("timm", {**params, "feature_stage": "whole"}).build(1000)
    assert torch.equal(logits(same, images), logits(network, (images - same.mean) / same.std))

    fresh = create_backbone("timm", {**params, "feature_stage": "whole"}).build(2).eval()
    assert torch.equal(fresh.body.layer4[0].conv1.weight, network.layer4[0].conv1.weight)
    with torch.no_grad():
        assert torch.equal(fresh.pool(fresh.features(images)), same.pool(same.features(images)))

    cut = create_backbone("timm", params).build(2).eval()
    assert "state_dict" not in cut.body.pretrained_cfg
    with torch.no_grad():
        expected = network.layer2(
            network.layer1(network.maxpool(network.act1(network.bn1(network.conv1((images - cut.mean) / cut.std)))))
        )
        assert torch.equal(cut.forward_features((images - cut.mean) / cut.std), expected)


def test_local_weights_of_another_model_are_refused(tmp_path):
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    params = {"model": "resnet10t", "pretrained": True, "weights": str(tmp_path / "resnet18.pth")}
    with pytest.raises(
        ConfigError, match=r"^backbone\.weights: .*resnet18\.pth does not fit the model: missing .* conv1\.0\.weight"
    ):
        create_backbone("timm", params).build(2)


def test_weights_digest_follows_the_file(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(timm.create_model("resnet10t").state_dict(), path)
    backbone = create_backbone("timm", {"model": "resnet10t", "pretrained": True, "weights": str(path)})
    first = backbone.weights_digest()
    assert first == file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    torch.save(timm.create_model("resnet10t").state_dict(), path)
    assert backbone.weights_digest() != first
    assert create_backbone("timm", {}).weights_digest() is None
    assert len(create_backbone("timm", {"model": "efficientnet_lite0", "pretrained": True}).weights_digest()) == 64


def _china(model) -> torch.Tensor:
    """scikit-learn's china.jpg, resized and cropped as timm does for the model (normalised inside the model)."""
    from sklearn.datasets import load_sample_image

    config = timm.data.resolve_data_config({}, model=model.body)
    assert config["input_size"] == (3, 224, 224)
    transform = timm.data.create_transform(**{**config, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
    return transform(Image.fromarray(np.asarray(load_sample_image("china.jpg"))))[None]


def test_shipped_efficientnet_lite0_recognises_a_temple(offline):
    model = whole("efficientnet_lite0", pretrained=True).build(1000)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(model.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    image = _china(model)
    probabilities = logits(model, image).softmax(dim=1)[0]
    top5 = probabilities.topk(5).indices.tolist()
    assert top5[0] == 698, [PLAUSIBLE.get(index, index) for index in top5]  # palace
    assert probabilities[698] > 0.2 and len(PLAUSIBLE.keys() & set(top5)) >= 3

    few = whole("efficientnet_lite0", pretrained=True).build(2).eval()  # the body loads, the head is fresh
    with torch.no_grad():
        assert torch.allclose(few.pool(few.features(image)), model.pool(model.features(image)))
    assert few.classifier.weight.shape == (2, 1280)

    cut = create_backbone("timm", {"model": "efficientnet_lite0", "pretrained": True, "feature_stage": 3}).build(2)
    assert torch.equal(cut.body.blocks[3][0].conv_pw.weight, model.body.blocks[3][0].conv_pw.weight)
