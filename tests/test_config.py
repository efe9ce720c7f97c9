import re

import pytest
import torch

from crayon_plugins import ConfigError, Pipeline, create_refiner, load_config
from crayon_plugins.config import RunConfig, parse_config


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_quickstart():
    config = load_config(None)
    assert config.dataset.name == "spurious-bars" and config.backbone.name == "timm"
    assert config.refiners == ["crayon-attention"]


def test_toml_round_trip_with_component_options(tmp_path):
    config = load_config(write(tmp_path, """
seed = 3
refiners = ["crayon-attention", "group-balanced"]
[dataset]
name = "spurious-bars"
n_train = 500
[training]
epochs = 1
[refiner.crayon-attention]
w_no = 5.0
"""))
    assert config.seed == 3 and config.dataset.params == {"n_train": 500}
    assert config.refiner_spec("crayon-attention").params == {"w_no": 5.0}


@pytest.mark.parametrize(
    "text, field",
    [
        ("seed = 'x'", "seed: Input should be a valid integer"),
        ("[training]\nepochs = 0", "training.epochs: Input should be greater than 0"),
        ("colour = 1", "colour: Extra inputs are not permitted"),
        ("refiners = ['a', 'a']", "refiners: Value error, names must not repeat"),
        ("device = 'tpu'", "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ],
)
def test_invalid_configuration_names_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert field in str(info.value)


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "seed = = 1"))
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml")


def test_component_options_are_validated_with_their_field_path():
    with pytest.raises(ConfigError, match=r"refiner\.crayon-attention\.w_no: Input should be greater than or equal to 0 \(got -1\)"):
        Pipeline.from_config(RunConfig(refiner={"crayon-attention": {"w_no": -1}}))
    with pytest.raises(ConfigError, match=r"dataset\.n_trian: Extra inputs are not permitted"):
        Pipeline.from_config(RunConfig.model_validate({"dataset": {"name": "spurious-bars", "n_trian": 10}}))


def test_crayon_attention_refuses_a_non_differentiable_interpreter():
    with pytest.raises(ConfigError, match="'captum-gradcam' is not differentiable"):
        create_refiner("crayon-attention", {"interpreter": "captum-gradcam"})


def test_a_section_without_a_name_configures_the_default_component():
    config = RunConfig.model_validate({"concepts": {"k": 7}, "neuron_annotator": {"flip_rate": 0.1}})
    assert config.concepts.name == "top-patches" and config.concepts.params == {"k": 7}
    assert config.neuron_annotator.name == "neuron-mask" and config.neuron_annotator.params == {"flip_rate": 0.1}


@pytest.mark.parametrize(
    ("section", "name", "message"),
    [
        ("annotator", "neuron-metadata", "annotator: 'neuron-metadata' does not judge maps (it judges neurons)"),
        ("neuron_annotator", "saliency-oracle", "neuron_annotator: 'saliency-oracle' does not judge neurons (it judges attention and maps)"),
    ],
)
def test_an_annotator_asked_what_it_cannot_judge_is_a_config_error(section, name, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Pipeline.from_config(RunConfig.model_validate({section: {"name": name}}))


def test_a_judge_section_without_name_configures_the_default_judge():
    judge = parse_config({"evaluation": {"judge": {"yes_above": 0.6}}}).evaluation.judge
    assert judge.name == "saliency-oracle" and judge.params == {"yes_above": 0.6}


def test_the_run_seed_draws_the_generated_data_and_the_annotators_noise_unless_pinned():
    """A spread over seeds covers the data's draw and the oracles' noise as well as the training."""
    seeded = Pipeline.from_config(RunConfig(seed=3))
    assert seeded.dataset.params.seed == 3 and seeded.annotator.params.seed == 3 and seeded.neuron_annotator.params.seed == 3
    assert all(member.params.seed == 3 for member in seeded.map_panel)
    pinned = Pipeline.from_config(RunConfig(seed=3, dataset={"name": "spurious-bars", "seed": 0}, annotator={"name": "saliency-oracle", "seed": 7}))
    assert pinned.dataset.params.seed == 0 and pinned.annotator.params.seed == 7
    small = {"name": "spurious-bars", "n_train": 8, "n_val": 4, "n_test": 4, "image_size": 32}
    images = [Pipeline.from_config(RunConfig(seed=s, dataset=small)).dataset.load("train").images.tensor for s in (3, 4)]
    assert not torch.equal(*images)
