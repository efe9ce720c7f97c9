import json

from typer.testing import CliRunner

from crayon_plugins.cli import app

runner = CliRunner()


def test_plugins_json_lists_kind_name_and_module():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    entry = next(c for c in listing["components"] if c["name"] == "crayon-attention")
    assert entry == {"kind": "refiner", "name": "crayon-attention", "plugin": "crayon-attention",
                     "module": "crayon_plugins.plugins.crayon_attention"}
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
        '[refiner."crayon-attention+pruning"]\nepochs = 1\n'
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
        '[refiner.gradia]\nepochs = 1\n[refiner.jtt]\nepochs = 1\n'
    )
    result = runner.invoke(app, ["compare", "--config", str(config), "--refiners", "gradia,jtt,crayon-pruning", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "table.md").read_text().splitlines()
    assert lines[0] == "| method | annotation | WGA | MGA | accuracy | RA | UA |"
    kinds = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in lines[2:]}
    assert kinds == {"original": "none", "gradia": "yes-no + map", "jtt": "none", "crayon-pruning": "yes-no"}
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    wga = [row["metrics"]["wga"] for row in written["rows"]]
    best_row = lines[2 + wga.index(max(wga))]
    assert f"**{100 * max(wga):.2f}**" == best_row.split(" | ")[2]
    assert (tmp_path / "out" / "reasonability-gradia.png").exists()
