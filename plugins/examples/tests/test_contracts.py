"""The example plugin's components keep every promise of their kinds, and its loss does what it says."""

import torch
from crayon_example.cosine_attention import CosineAttention, cosine_attention_loss
from crayon_example.gradient_input import GradientTimesInput

from crayon_plugins.api import Answer
from crayon_plugins.testing import check_interpreter, check_refiner


def test_gradient_x_input_keeps_the_interpreter_contract():
    check_interpreter(GradientTimesInput())


def test_cosine_attention_keeps_the_refiner_contract():
    check_refiner(CosineAttention())


def test_the_cosine_loss_rewards_new_maps_for_no_and_the_same_map_for_yes():
    original = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]).repeat(3, 1, 1)
    current = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]).repeat(3, 1, 1)
    answers = torch.tensor([Answer.NO, Answer.YES, Answer.MAYBE])
    assert cosine_attention_loss(current, original, answers).tolist() == [0.0, 1.0, 0.0]
    assert cosine_attention_loss(original, original, answers).tolist() == [1.0, 0.0, 0.0]
