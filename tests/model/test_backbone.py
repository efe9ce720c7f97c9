"""The timm backbone: the default cut, the whole-model option, and the errors that name the field."""

import pytest
import torch

from crayon_plugins import ConfigError, create_backbone


def test_default_backbone_gives_an_8x8_grid_at_64_px_and_splits_exactly():
    torch.manual_seed(0)
    model = create_backbone("timm", {}).build(3).eval()
    images = torch.rand(2, 3, 64, 64)
    features = model.features(images)
    assert features.shape == (2, 128, 8, 8)
    assert torch.equal(model(images), model.head(features))
    assert model(images).shape == (2, 3)


def test_whole_model_uses_timm_head_and_output_stride():
    model = create_backbone("timm", {"feature_stage": "whole", "output_stride": 16}).build(2).eval()
    assert model.features(torch.rand(1, 3, 64, 64)).shape == (1, 512, 4, 4)


def test_feature_stage_out_of_range_names_the_field():
    with pytest.raises(ConfigError, match=r"backbone\.feature_stage: timm model 'resnet10t' has no feature stage 9"):
        create_backbone("timm", {"feature_stage": 9}).build(2)


def test_unknown_model_names_close_matches():
    with pytest.raises(ConfigError, match=r"backbone\.model: timm has no model 'resnet10x'; close: .*resnet10t"):
        create_backbone("timm", {"model": "resnet10x"}).build(2)
