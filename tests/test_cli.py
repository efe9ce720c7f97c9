import json

import pytest
from typer.testing import CliRunner

from crayon_plugins.cli import app

runner = CliRunner()


def test_plugins_json_lists_kind_name_and_module():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    entry = next(c for c in listing["components"] if c["name"] == "crayon-attention")
    assert entry == {"kind": "refiner", "name": "crayon-attention", "plugin": "crayon_plugins.plugins.refiners.crayon_attention",
                     "module": "crayon_plugins.plugins.refiners.crayon_attention"}
    assert listing["broken"] == [] and listing["conflicts"] == []


def test_user_errors_exit_2_with_a_message_and_no_traceback(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[training]\nepochs = -1\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "training.epochs: Input should be greater than 0" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_refiner_exits_2_and_lists_the_available_ones(tmp_path):
    result = runner.invoke(app, ["run", "--refiners", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown refiner 'nope'" in result.output and "crayon-attention" in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "run", "--refiners", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "UnknownComponentError"


def test_run_with_the_pruning_refiners_prints_the_pruned_column_and_the_neuron_answers(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[dataset]\nn_train = 192\nn_test = 64\nimage_size = 32\n[training]\nepochs = 1\n[concepts]\nk = 10\n'
        '[refiner."crayon-attention+pruning"]\nepochs = 1\nmax_pruned = 1.0\n[refiner.crayon-pruning]\nmax_pruned = 1.0\n'  # a one-epoch model's degenerate answers
    )
    result = runner.invoke(app, ["run", "--config", str(config), "--refiners", "crayon-pruning,crayon-attention+pruning", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "method" in line)
    assert "pruned" in header
    assert "neurons (neuron-mask): relevant" in result.output and "49.5% (Waterbirds)" in result.output
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["method"] for row in written["rows"]] == ["original", "crayon-pruning", "crayon-attention+pruning"]


def test_compare_writes_a_table_with_annotation_kinds_and_the_best_value_in_bold(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'metrics = ["accuracy", "group-accuracy", "reasonability"]\n'
        '[dataset]\nn_train = 192\nn_test = 64\nimage_size = 32\n[training]\nepochs = 1\n[concepts]\nk = 10\n'
        '[refiner.gradia]\nepochs = 1\n[refiner.jtt]\nepochs = 1\n[refiner.crayon-pruning]\nmax_pruned = 1.0\n'  # a one-epoch model's degenerate answers
    )
    result = runner.invoke(app, ["compare", "--config", str(config), "--refiners", "gradia,jtt,crayon-pruning", "--seeds", "0", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "table.md").read_text()
    assert "Bold: the best mean of a column" in text and "selection rule `val-accuracy`" in text
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| method | annotation | WGA | MGA | accuracy | RA | UA |"
    kinds = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in lines[2:]}
    assert kinds == {"original": "none", "gradia": "yes-no + map", "jtt": "none", "crayon-pruning": "yes-no"}
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    wga = [row["metrics"]["wga"] for row in written["rows"]]
    best_row = lines[2 + wga.index(max(wga))]
    clear = sorted(wga)[-1] > sorted(wga)[-2]  # one seed: the best is bold unless tied
    assert (f"**{100 * max(wga):.2f}**" == best_row.split(" | ")[2]) == clear
    assert all(row["selection"][0]["rule"] == "val-accuracy" for row in written["rows"])
    assert (tmp_path / "out" / "reasonability-gradia.png").exists()


def test_compare_over_seeds_writes_mean_and_std_with_each_seeds_metrics_and_selection(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'metrics = ["accuracy", "group-accuracy"]\n[selection]\nrule = "val-wga"\nalso = ["last", "val-wga"]\n'
        '[dataset]\nn_train = 192\nn_val = 64\nn_test = 64\nimage_size = 32\n[training]\nepochs = 2\n[refiner.finetune]\nepochs = 2\n'
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", "--config", str(config), "--refiners", "finetune,dfr", "--seeds", "0,1", "--jobs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "results.json").read_text())
    assert written["seeds"] == [0, 1] and [row["method"] for row in written["rows"]] == ["original", "finetune", "dfr"]
    for row in written["rows"]:
        per_seed = [entry["metrics"]["wga"] for entry in row["seeds"]]
        assert [entry["seed"] for entry in row["seeds"]] == [0, 1]
        assert row["metrics"]["wga"] == pytest.approx(sum(per_seed) / 2)
        assert row["std"]["wga"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)
        assert [(s["seed"], s["rule"]) for s in row["selection"]] == [(0, "val-wga"), (1, "val-wga")]
    finetune = written["rows"][1]["selection"][0]
    assert finetune["epoch"] in (1, 2) and len(finetune["validation"]) == 2
    assert written["rows"][2]["selection"][0]["epoch"] is None  # dfr does not train by epochs
    table = (out / "table.md").read_text()
    assert " ± " in table and "uses validation group labels" in table
    assert (out / "curves-finetune-seed1.png").exists()
    # One training serves every rule: each rule's row is the test metrics of the epoch it keeps.
    for row in written["rows"]:
        for entry in row["selection"]:
            assert entry["rules"]["val-wga"]["metrics"] == row["seeds"][entry["seed"]]["metrics"]  # the run's own rule, looked up: its row
            if entry["epoch"] is None:  # dfr: one model for every rule
                assert entry["rules"]["last"] == {"epoch": None, "metrics": row["seeds"][entry["seed"]]["metrics"]}
            else:
                assert entry["rules"]["last"] == {"epoch": 2, "metrics": entry["test"][1]} and len(entry["test"]) == 2
    last = (out / "table-last.md").read_text()
    assert "selection rule `last`" in last and "Looked up from the same trainings as the run's rule `val-wga`" in last
    finetune = written["rows"][1]
    per_seed = [entry["test"][1]["wga"] for entry in finetune["selection"]]
    shown = next(line for line in last.splitlines() if line.startswith("| finetune |")).split(" | ")[2]
    assert shown.startswith(f"{100 * sum(per_seed) / 2:.2f} ± ")


def test_version_prints_the_distributions_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"crayon-plugins {version('crayon-plugins')}"

