import pytest
import torch

from crayon_plugins import create_metric
from crayon_plugins.api.components import Predictions
from crayon_plugins.data.image_set import ImageSet


def split(labels, spurious):
    n = len(labels)
    return ImageSet(torch.zeros(n, 3, 4, 4), torch.tensor(labels), torch.tensor(spurious), None,
                    tuple(map(str, range(n))), ("a", "b"), ("x", "y"))


def test_group_metrics_against_hand_computed_values():
    test = split([0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 0, 1, 0, 0, 1, 1])  # groups: a/x 1.0, a/y 0.5, b/x 0.0, b/y 1.0
    shares = torch.tensor([0.45, 0.05, 0.05, 0.45], dtype=torch.float64)
    found = Predictions(test, predicted, shares)
    groups = create_metric("group-accuracy").compute(found)
    assert groups["groups"] == {"a/x": 1.0, "a/y": 0.5, "b/x": 0.0, "b/y": 1.0}
    assert groups["wga"] == 0.0 and groups["mga"] == pytest.approx(0.625)
    # in-distribution accuracy weights groups by their training share, not their test share
    accuracy = create_metric("accuracy").compute(found)["accuracy"]
    assert accuracy == pytest.approx(0.45 * 1 + 0.05 * 0.5 + 0.05 * 0 + 0.45 * 1)
