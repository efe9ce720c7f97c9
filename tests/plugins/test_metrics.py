import pytest
import torch

from crayon_plugins import create_metric
from crayon_plugins.api.components import Predictions
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import ConfigError
from crayon_plugins.training.selection import choose_epoch, validation_metrics


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


def no_groups(labels):
    n = len(labels)
    return ImageSet(torch.zeros(n, 3, 4, 4), torch.tensor(labels), torch.zeros(n, dtype=torch.int64), None, tuple(map(str, range(n))), ("a", "b", "c"), ())


def test_group_metrics_without_a_group_attribute_report_per_class_accuracy():
    test = no_groups([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])  # a 3/4, b 1/2, c 2/2; 6 of 8 right
    shares = test.group_shares()
    assert shares.tolist() == [0.5, 0.25, 0.25]
    found = Predictions(test, predicted, shares)
    groups = create_metric("group-accuracy").compute(found)
    assert groups == {"accuracy": 0.75, "worst_class_accuracy": 0.5, "class_accuracy": {"a": 0.75, "b": 0.5, "c": 1.0}}
    assert create_metric("accuracy").compute(found) == {"accuracy": 0.75}  # plain: no group shares to weigh by


def test_a_class_missing_from_the_split_is_none_and_left_out_of_the_worst():
    test = no_groups([0, 0, 2, 2])
    summary = test.group_summary(torch.tensor([0, 1, 2, 2]))
    assert summary["class_accuracy"] == {"a": 0.5, "b": None, "c": 1.0} and summary["worst_class_accuracy"] == 0.5
    assert test.missing_groups() == ["b"]


def test_validation_without_groups_measures_what_it_can_and_val_wga_is_refused():
    val = no_groups([0, 0, 1, 1, 2, 2])
    found = validation_metrics(val, torch.tensor([0, 0, 1, 0, 2, 1]), val.group_shares())
    # classes' accuracies 2/2, 1/2, 1/2: balanced accuracy (1 + 0.5 + 0.5) / 3
    assert found == {"worst_class_accuracy": 0.5, "accuracy": pytest.approx(4 / 6), "plain_accuracy": pytest.approx(4 / 6), "balanced_accuracy": pytest.approx(2 / 3)}
    epochs = [found, {**found, "plain_accuracy": 0.9}, {**found, "plain_accuracy": 0.8}]
    assert choose_epoch("val-accuracy", epochs) == 2 and choose_epoch("last", epochs) == 3
    with pytest.raises(ConfigError, match=r"selection\.rule = 'val-wga' .*no group attribute.*val-accuracy"):
        choose_epoch("val-wga", epochs)
