"""``crayon new-plugin``: the scaffold installs, is discovered, and its own tests pass."""

import json
import subprocess
import sys

import pytest
from test_example_plugin import install
from test_study import crayon
from typer.testing import CliRunner

from crayon_plugins.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_a_new_plugin_installs_registers_and_passes_its_own_tests(tmp_path):
    result = runner.invoke(app, ["new-plugin", "demo", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "demo"
    assert (root / "src" / "crayon_demo" / "refiner.py").exists()
    env = install(root, tmp_path / "site")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    listing = json.loads(subprocess.run(crayon("plugins", "--json"), env=env, check=True, capture_output=True, text=True).stdout)
    assert {"kind": "refiner", "name": "demo", "plugin": "demo", "module": "crayon_demo.refiner"} in listing["components"]


@pytest.mark.slow
def test_the_scaffolds_test_fails_when_the_refiner_breaks_a_promise(tmp_path):
    """The scaffolded test is a real check: make the refiner modify the model it is given."""
    runner.invoke(app, ["new-plugin", "demo", "--dir", str(tmp_path)])
    refiner = tmp_path / "demo" / "src" / "crayon_demo" / "refiner.py"
    text = refiner.read_text()
    broken = text.replace("        self.gradcam = GradCam()\n", "        self.gradcam = GradCam()\n\n    def start(self, model, context):\n        return model  # trains the given model in place\n")
    assert broken != text
    refiner.write_text(broken)
    env = install(tmp_path / "demo", tmp_path / "site")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / "demo", env=env, capture_output=True, text=True)
    assert tests.returncode == 1
    assert "leaves-the-original-untouched: refine returned the model it was given" in tests.stdout


@pytest.mark.parametrize(("name", "message"), [("Demo Plugin", "must be lower-case"), ("2fast", "must be lower-case"), ("taken", "already exists")])
def test_bad_names_and_existing_folders_are_refused_and_nothing_is_overwritten(tmp_path, name, message):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    result = runner.invoke(app, ["new-plugin", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2 and message in " ".join(result.output.split())  # rich wraps long lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
