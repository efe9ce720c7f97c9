"""The `module` backbone: a user's own network from a factory in a file, or from a torch.export file."""

import copy
import json
import os
import pickle
import re
import textwrap
import zipfile

import pytest
import torch

from crayon_plugins import ConfigError, create_backbone, create_interpreter
from crayon_plugins.api import normalise_maps
from crayon_plugins.model.checkpoints import load_checkpoint
from crayon_plugins.testing import check_backbone

USER_CODE = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self, num_classes=3, skip=False):
        super().__init__()
        self.skip = skip
        self.stem = Block(3, 6)
        self.layer3 = Block(6, 6)
        self.layer4 = nn.Sequential(Block(6, 6), Block(6, 6))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        x = self.layer3(self.stem(x))
        y = self.layer4(x)
        if self.skip:
            y = y + x
        return self.fc(torch.flatten(self.avgpool(y), 1))


def build(num_classes=3, skip=False):
    return Net(num_classes, skip)


def not_a_network(num_classes=3):
    return 3
"""


def write_user_code(folder):
    path = folder / "elsewhere" / "user_net.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(USER_CODE))
    return path


@pytest.fixture
def user_file(tmp_path):
    return write_user_code(tmp_path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A network of the user's code saved with torch.export (dynamic batch), and that network."""
    folder = tmp_path_factory.mktemp("exported")
    torch.manual_seed(3)
    network = backbone(write_user_code(folder)).build(3).body.eval()
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(network, (torch.rand(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}}), folder / "net.pt2")
    return folder / "net.pt2", network


def backbone(user_file, **options):
    return create_backbone("module", {"factory": f"{user_file}:build", "target_layer": "layer4", "image_size": 16, **options})


def normalise(model, images):
    return (images - model.mean) / model.std


def test_forward_is_the_networks_own_on_normalised_images(user_file):
    torch.manual_seed(0)
    model = backbone(user_file).build(3).eval()
    images = torch.rand(4, 3, 16, 16)
    assert torch.equal(model(images), model.body(normalise(model, images)))
    assert model.features(images).shape == (4, 6, 16, 16)
    assert model.classifier is model.body.fc
    assert len(list(model.parameters())) == len(list(model.body.parameters()))
    keys = set(model.state_dict())
    assert {"body.fc.weight", "classifier.weight", "body.layer4.0.conv.weight", "feature_map.mask"} <= keys
    assert all(k.startswith(("body.", "classifier.")) for k in keys - {"mean", "std", "feature_map.mask"})


def test_the_backbone_keeps_its_contract(user_file):
    check_backbone(backbone(user_file))


def test_gradcam_explains_the_output_of_the_target_layer(user_file):
    torch.manual_seed(1)
    model = backbone(user_file).build(3).eval()
    images, targets = torch.rand(3, 3, 16, 16), torch.tensor([0, 2, 1])
    maps = create_interpreter("captum-gradcam")(model, images, targets)
    assert torch.allclose(maps, create_interpreter("gradcam")(model, images, targets), atol=1e-4)
    seen = {}
    handle = model.body.layer4.register_forward_hook(lambda module, inputs, output: seen.update(a=output))
    logits = model.body(normalise(model, images))
    handle.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), seen["a"])
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * seen["a"]).sum(dim=1)).detach()
    assert maps.shape == (3, 16, 16) and maps.amax() > 0
    assert torch.allclose(maps, normalise_maps(cam), atol=1e-5)


def test_pruning_a_neuron_zeroes_that_channel_of_the_target_layer(user_file):
    torch.manual_seed(2)
    model = backbone(user_file).build(3).eval()
    images = torch.rand(2, 3, 16, 16)
    zeroed = torch.ones(6).index_fill_(0, torch.tensor([4]), 0)
    handle = model.body.layer4.register_forward_hook(lambda module, inputs, output: output * zeroed.view(1, -1, 1, 1))
    expected = model.body(normalise(model, images))
    handle.remove()
    unpruned = model(images)
    model.feature_map.mask[4] = 0
    assert torch.equal(model(images), expected)
    assert not torch.equal(model(images), unpruned)


def test_copies_and_moves_keep_the_pieces_on_their_own_network(user_file):
    model = backbone(user_file).build(3).eval()
    images = torch.rand(2, 3, 16, 16)
    twin = copy.deepcopy(model)
    assert twin.classifier is twin.body.fc and twin.body is not model.body
    assert not {id(p) for p in twin.parameters()} & {id(p) for p in model.parameters()}
    with torch.no_grad():
        twin.body.layer4[0].conv.weight.mul_(2)
        twin.body.layer4[0].bn.running_mean.add_(1)
    assert torch.equal(twin(images), twin.body(normalise(twin, images)))
    assert not torch.equal(twin(images), model(images))
    wide = copy.deepcopy(model).double()
    assert torch.allclose(wide(images.double()), model(images).double(), atol=1e-5)


def test_a_checkpoint_of_the_bare_network_loads(user_file, tmp_path):
    model = backbone(user_file).build(3).eval()
    torch.manual_seed(7)
    bare = copy.deepcopy(model.body)
    for parameter in bare.parameters():
        torch.nn.init.normal_(parameter)
    torch.save(bare.state_dict(), tmp_path / "net.pt")
    load_checkpoint(model, tmp_path / "net.pt")
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(model(images), bare(normalise(model, images)))


def test_a_torch_export_file_round_trips(exported, user_file):
    path, network = exported
    from_file = create_backbone("module", {"file": str(path), "target_layer": "layer4"})
    model = from_file.build(3).eval()
    images = torch.rand(5, 3, 16, 16)
    assert torch.equal(model(images), model.body(normalise(model, images)))
    assert torch.allclose(model(images), network(normalise(model, images)), atol=1e-6)
    assert model.features(images).shape == (5, 6, 16, 16) and model.classifier is model.body.fc
    assert len(list(model.parameters())) == len(list(network.parameters()))
    check_backbone(create_backbone("module", {"file": str(path), "target_layer": "layer4", "replace_head": True}), torch.rand(4, 3, 16, 16))
    assert from_file.weights_digest() != backbone(user_file).weights_digest()


class RunsCode:
    """A pickle that makes a folder when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def rewritten(path, target, change):
    """A copy of the archive at ``path`` with ``change(name, data)`` applied to each record."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy_:
        for info in source.infolist():
            copy_.writestr(info, change(info.filename, source.read(info.filename)))
    return target


def pickled_weight(marker):
    def change(name, data):
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return pickle.dumps(RunsCode(marker)) if name.endswith("data/weights/weight_0") else data

    return change


def evaluated_shape(marker):
    def change(name, data):
        return re.sub(rb"Symbol\('s\d+'[^)]*\)", f"__import__('os').mkdir('{marker}')".encode(), data) if name.endswith("models/model.json") else data

    return change


@pytest.mark.parametrize(("craft", "message"), [(pickled_weight, "is stored as a pickle"), (evaluated_shape, "not a plain sympy expression")])
def test_a_crafted_export_file_is_refused_before_torch_reads_it(exported, tmp_path, craft, message):
    marker = tmp_path / "code-ran"
    crafted = rewritten(exported[0], tmp_path / "crafted.pt2", craft(marker))
    with pytest.raises(ConfigError, match=rf"backbone\.file: .* is refused: .*{message}"):
        create_backbone("module", {"file": str(crafted), "target_layer": "layer4"}).build(3)
    assert not marker.exists()
    plain = rewritten(exported[0], tmp_path / "plain.pt2", lambda name, data: data)
    assert create_backbone("module", {"file": str(plain), "target_layer": "layer4"}).build(3).neuron_mask.shape == (6,)


def test_the_digest_follows_the_code(user_file):
    before = backbone(user_file).weights_digest()
    user_file.write_text(user_file.read_text() + "\n# edited\n")
    assert backbone(user_file).weights_digest() != before


def test_a_factory_by_import_path(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    model = create_backbone("module", {"factory": "user_net:build", "target_layer": "layer4", "image_size": 8, "kwargs": {"skip": False}}).build(2)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 2)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"factory": "nowhere/net.py:build"}, "factory", r"nowhere/net\.py: no such file"),
        ({"factory": "no_such_package_here.models:build"}, "factory", r"no module named 'no_such_package_here'"),
        ({"factory": "{file}:buidl"}, "factory", r"has no attribute 'buidl'; close: build"),
        ({"factory": "{file}:not_a_network"}, "factory", r"returned a int, not an nn.Module"),
        ({"target_layer": "layer5"}, "target_layer", r"no submodule 'layer5'; close: layer4, layer3"),
        ({"kwargs": {"skip": True}}, "target_layer", r"still uses values computed before it \(layer3\): a skip connection"),
        ({"head": "avgpool"}, "head", r"'avgpool' is a AdaptiveAvgPool2d, not an nn.Linear"),
        ({"kwargs": {"num_classes": 3}}, "kwargs", r"'num_classes' is passed as the number of classes"),
        ({"num_classes_argument": ""}, "replace_head", r"has 3 outputs but the dataset has 2 classes"),
        ({"file": "{dir}/net.ts", "factory": None}, "file", r"TorchScript file.*torch\.export"),
    ],
)
def test_errors_name_the_field(user_file, options, field, message):
    options = {k: v.format(file=user_file, dir=user_file.parent) if isinstance(v, str) else v for k, v in options.items()}
    if "file" in options:
        torch.jit.save(torch.jit.trace(backbone(user_file).build(3).body.eval(), torch.rand(1, 3, 8, 8)), options["file"])
    with pytest.raises(ConfigError, match=rf"backbone\.{field}: .*{message}") as caught:
        backbone(user_file, **options).build(2)
    assert caught.value.field == f"backbone.{field}"


def test_factory_and_file_are_exclusive(user_file):
    with pytest.raises(ConfigError, match=r"backbone\.factory: give either factory"):
        create_backbone("module", {"target_layer": "layer4"})
