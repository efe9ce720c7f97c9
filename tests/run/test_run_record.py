"""What a run records and how it is driven: per-epoch loss terms (results.json, training.csv,
TensorBoard), resolved options and versions, command-line overrides, the notebook API, refused
refiners that do not stop the others, and the control that trains as the method it controls."""

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

import crayon_plugins
from crayon_plugins.api.components import Refiner
from crayon_plugins.cli import app
from crayon_plugins.config import Optimisation, RunConfig, load_config
from crayon_plugins.errors import ConfigError, RunIncomplete
from crayon_plugins.registry import Registration, default_registry
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.training.loop import fit, log_term

TINY = {
    "dataset": {"name": "spurious-bars", "n_train": 96, "n_val": 32, "n_test": 32, "image_size": 32},
    "training": {"epochs": 1, "batch_size": 96},
    "metrics": ["accuracy", "group-accuracy"],
}
ONE_STEP = {"epochs": 2, "batch_size": 96}  # one minibatch per epoch: the log's terms add up to its loss


def test_fit_logs_each_term_per_image_as_the_loss_computed_it():
    """A "sum" term adds up over the epoch's items, a "mean" term weighs each minibatch by its size;
    both are divided by the items of the epoch."""
    model = torch.nn.Linear(2, 1)
    seen: list[tuple[float, float, int]] = []

    def batch_loss(indices, _):
        summed = (indices.float() + 1).sum()
        mean = (indices.float() * 2).mean()
        log_term("summed", summed, "sum")
        log_term("mean", mean, "mean")
        seen.append((float(summed), float(mean), len(indices)))
        return model.weight.sum() * 0 + summed + mean

    logs = []

    class Recorder:
        def on_epoch_end(self, epoch, m, log):
            logs.append(log)

        def on_fit_end(self, m):
            pass

    fit(model, batch_loss, 10, Optimisation(epochs=1, batch_size=4), 0, "test", observers=[Recorder()])
    assert [n for *_, n in seen] == [4, 4, 2]
    assert logs[0]["summed"] == pytest.approx(sum(range(1, 11)) / 10)  # Σ (i + 1) over the 10 items, per item
    assert logs[0]["mean"] == pytest.approx(sum(m * n for _, m, n in seen) / 10)
    assert logs[0]["mean"] == pytest.approx(sum(2 * i for i in range(10)) / 10)
    assert logs[0]["loss_per_step"] == pytest.approx(sum(s + m for s, m, _ in seen) / 3)
    log_term("outside", torch.tensor(1.0))  # outside fit: nothing happens


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("logged")
    config = RunConfig.model_validate({**TINY, "refiners": ["crayon-attention", "finetune"], "refiner": {"crayon-attention": ONE_STEP}, "logging": {"tensorboard": True}})
    results = Pipeline.from_config(config, cache=ArtefactCache(root / "cache")).run(root / "out", observers=None)
    return root / "out", results


def test_results_json_holds_each_epochs_loss_terms_and_they_add_up_to_the_loss(logged_run):
    out, results = logged_run
    written = json.loads((out / "results.json").read_text())
    row = next(r for r in written["rows"] if r["method"] == "crayon-attention")
    training = row["selection"][0]["training"]
    assert len(training) == 2 and {"cross_entropy", "loss_per_step"} <= set(training[0])
    assert {"energy_no", "energy_yes"} & set(training[0])
    for epoch in training:  # summed cross-entropy and energy terms, per image, times the images: the one step's loss
        terms = sum(v for k, v in epoch.items() if k != "loss_per_step")
        assert terms * 96 == pytest.approx(epoch["loss_per_step"], rel=1e-5)
    original = written["rows"][0]["selection"][0]["training"]
    assert len(original) == 1 and set(original[0]) == {"cross_entropy", "loss_per_step"}


def test_training_csv_and_tensorboard_hold_the_same_numbers(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, results = logged_run
    row = results.row("crayon-attention").selection[0]
    with open(out / "training.csv") as handle:
        rows = list(csv.DictReader(handle))
    mine = {(r["epoch"], r["split"], r["name"]): float(r["value"]) for r in rows if r["method"] == "crayon-attention"}
    assert mine[("2", "train", "cross_entropy")] == pytest.approx(row["training"][1]["cross_entropy"])
    assert mine[("1", "val", "wga")] == pytest.approx(row["validation"][0]["wga"])
    events = EventAccumulator(str(out / "tensorboard" / "crayon-attention"))
    events.Reload()
    assert {"train/cross_entropy", "val/wga"} <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("train/cross_entropy")]
    assert [step for step, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx([epoch["cross_entropy"] for epoch in row["training"]], rel=1e-6)


def test_results_json_records_every_resolved_option_and_the_versions(logged_run):
    out, _ = logged_run
    run = json.loads((out / "results.json").read_text())["run"]
    attention = run["components"]["refiners"]["crayon-attention"]["options"]
    assert attention["epochs"] == 2 and attention["w_no"] == 5000.0 and attention["lr"] == 1e-4  # set, and defaults filled in
    assert run["components"]["backbone"] == {"name": "timm", "options": {"model": "resnet10t", "feature_stage": 2, "output_stride": None, "pretrained": False, "weights": None}}
    assert run["configuration"]["training"]["epochs"] == 1 and run["device"] == "cpu" and run["threads"] >= 1
    assert {"python", "torch", "timm", "crayon-plugins"} <= set(run["versions"])


def test_the_control_trains_as_the_method_it_controls(logged_run):
    """``epochs = 2`` for crayon-attention also gives finetune two epochs; the rows say so."""
    _, results = logged_run
    assert len(results.row("finetune").selection[0]["training"]) == 2
    assert results.row("crayon-attention").details["control"] == "finetune"
    config = RunConfig.model_validate({**TINY, "refiners": ["crayon-attention", "finetune"], "refiner": {"crayon-attention": {"epochs": 2}, "finetune": {"epochs": 3, "lr": 1e-3}}})
    pipeline = Pipeline.from_config(config)
    assert pipeline.refiners["finetune"].params.epochs == 3 and pipeline.controls() == {"crayon-attention": None}
    config = RunConfig.model_validate({**TINY, "refiners": ["crayon-attention", "finetune"], "refiner": {"crayon-attention": {"epochs": 2}, "finetune": {"lr": 1e-3}}})
    control = Pipeline.from_config(config).refiners["finetune"].params
    assert (control.epochs, control.lr) == (2, 1e-3)  # what finetune sets stays its own


def test_a_studys_control_cells_train_as_the_runs_control():
    """Each cell runs one refiner; its finetune still takes the options set for crayon-attention."""
    from crayon_plugins.study.spec import Grid, StudySpec

    base = RunConfig.model_validate({**TINY, "refiner": {"crayon-attention": {"epochs": 1, "lr": 3e-4}, "finetune": {"lr": 1e-3}}})
    spec = StudySpec(title="t", base=base, grid=Grid(refiner=["crayon-attention", "finetune", "group-balanced"], seed=[0, 1]))
    controls = [cell.config.refiner["finetune"] for cell in spec.cells() if cell.refiner == "finetune"]
    assert controls == [{"epochs": 1, "lr": 1e-3}] * 2  # what finetune sets stays its own
    assert all(cell.config.refiner["finetune"] == {"lr": 1e-3} for cell in spec.cells() if cell.refiner == "group-balanced")  # only the control's cells change


class Exploding(Refiner):
    def refine(self, model, context):
        raise RuntimeError("out of ideas")


@pytest.fixture
def exploding_refiner():
    registry = default_registry()
    registry.components["refiner"]["exploding"] = Registration("refiner", "exploding", Exploding, "test-plugin")
    yield
    del registry.components["refiner"]["exploding"]


def test_a_refused_refiner_does_not_stop_the_others_and_the_run_ends_naming_it(tmp_path, exploding_refiner):
    config = RunConfig.model_validate({**TINY, "refiners": ["exploding", "group-balanced"], "refiner": {"group-balanced": {"epochs": 1}}})
    with pytest.raises(RunIncomplete, match=r"refiner 'exploding' \(plugin 'test-plugin'\) failed: RuntimeError: out of ideas") as info:
        Pipeline.from_config(config, cache=ArtefactCache(tmp_path / "cache")).run(tmp_path / "out", observers=None)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["method"] for row in written["rows"]] == ["original", "exploding", "group-balanced"]
    assert written["rows"][1]["metrics"] == {} and "out of ideas" in written["rows"][1]["details"]["refused"]
    assert 0 <= written["rows"][2]["metrics"]["wga"] <= 1
    assert sorted(p.name for p in (tmp_path / "out" / "models").iterdir()) == ["group-balanced", "original"]
    assert info.value.results.row("group-balanced").metrics == written["rows"][2]["metrics"]


def test_dotted_overrides_equal_the_same_keys_in_the_file(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('refiners = []\nmetrics = ["accuracy", "group-accuracy"]\n[dataset]\nn_train = 96\nn_val = 32\nn_test = 32\nimage_size = 32\n[training]\nepochs = 2\n')
    same = tmp_path / "same.toml"
    same.write_text(base.read_text().replace("epochs = 2", "epochs = 1"))
    runner = CliRunner()
    result = runner.invoke(app, ["run", "-c", str(base), "--out", str(tmp_path / "a"), "training.epochs=1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["run", "-c", str(same), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert [(r["metrics"], r["selection"]) for r in a["rows"]] == [(r["metrics"], r["selection"]) for r in b["rows"]]
    assert a["run"]["configuration"] == b["run"]["configuration"]
    result = runner.invoke(app, ["run", "-c", str(base), "--out", str(tmp_path / "c"), "training.epoch=1"])
    assert result.exit_code == 2 and "training has no key 'epoch'; close: epochs" in result.output
    assert not (tmp_path / "c").exists()


def test_overrides_are_validated_like_the_file():
    assert load_config(None, ["refiner.crayon-attention.w_no=10", "refiners=[\"finetune\"]"]).refiner == {"crayon-attention": {"w_no": 10}}
    with pytest.raises(ConfigError, match="the configuration has no key 'trainin'; close: training"):
        load_config(None, ["trainin.epochs=1"])
    with pytest.raises(ConfigError, match="training.epochs: Input should be greater than 0"):
        load_config(None, {"training.epochs": 0})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["training"])


def test_the_notebook_api_returns_results_with_their_models(tmp_path):
    results = crayon_plugins.run({**TINY, "refiners": ["finetune"]}, cache=tmp_path / "cache", training={"epochs": 1}, **{"refiner.finetune.epochs": 1})
    assert [row.method for row in results.rows] == ["original", "finetune"]
    model = results.models["finetune"]
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert model(images).shape == (3, 2)
    assert results.run["components"]["refiners"]["finetune"]["options"]["epochs"] == 1
    assert not (tmp_path / "out").exists()  # without out, nothing is written
