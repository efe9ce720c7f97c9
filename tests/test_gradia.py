"""GRADIA's quadrant weights and attention loss, and the reasonability matrix."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crayon_plugins import create_metric
from crayon_plugins.components import Predictions
from crayon_plugins.data import NOT_ANNOTATED, Answer
from crayon_plugins.plugins.gradia import attention_l1, quadrant_weights

from test_metrics import split


@settings(max_examples=40, deadline=None)
@given(flags=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=20), a=st.floats(0.5, 1.0))
def test_quadrant_weights_follow_gradias_table(flags, a):
    reasonable = torch.tensor([r for r, _ in flags])
    accurate = torch.tensor([c for _, c in flags])
    w_pred, w_att = quadrant_weights(reasonable, accurate, a)
    table = {(True, True): (1 - a, 1 - a), (False, True): (1 - a, a), (True, False): (a, 1 - a), (False, False): (a, a)}
    for i, key in enumerate(flags):
        assert (float(w_pred[i]), float(w_att[i])) == pytest.approx(table[key], abs=1e-6)


def test_reasonability_matrix_against_hand_counted_quadrants():
    test = split([0, 0, 0, 1, 1, 1, 1, 0], [0] * 8)
    predicted = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])  # accurate: T F T T F T T T
    answers = torch.tensor([Answer.YES, Answer.YES, Answer.NO, Answer.NO, Answer.NO, Answer.MAYBE, NOT_ANNOTATED, Answer.NO])
    found = create_metric("reasonability").compute(Predictions(test, predicted, torch.ones(4) / 4, answers))
    assert found["reasonability_counts"] == {
        "reasonable-accurate": 1, "reasonable-inaccurate": 1, "unreasonable-accurate": 3,
        "unreasonable-inaccurate": 1, "undecided": 2,
    }
    assert found["reasonability"]["unreasonable-accurate"] == 3 / 8
    assert sum(found["reasonability"].values()) == pytest.approx(1.0)


def test_attention_l1_is_zero_on_the_target_and_counts_every_cell():
    target = torch.zeros(1, 2, 2)
    target[0, 0, 0] = 1.0
    assert float(attention_l1(target, target)) == 0.0
    assert float(attention_l1(torch.ones(1, 2, 2), target)) == pytest.approx(3 / 4)
