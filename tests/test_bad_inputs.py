"""Bad input, broken caches, killed runs and degenerate answers: a clear error (exit 2, naming the file,
field or plugin), nothing non-finite or partial written, nothing computed lost. One test per kind of
bad input; the CLI cases run ``crayon`` in this process through typer's runner, and the cases
about killed processes and locks in processes of their own."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from crayon_plugins.plugins.metrics.groups import GroupAccuracy
from crayon_plugins.plugins.refiners.crayon_pruning import neuron_answers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crayon_plugins.annotation.records import Answer
from crayon_plugins.api.components import Predictions
from crayon_plugins.cli import app
from crayon_plugins.config import parse_config
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.errors import CrayonError
from crayon_plugins.run.cache import ArtefactCache, cache_key
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.run.results import ResultRow, Results
from crayon_plugins.run.stages.explain import fits_tensor
from crayon_plugins.run.stages.original import fits_model

TINY = "[dataset]\nn_train = 192\nn_val = 64\nn_test = 64\nimage_size = 32\n[training]\nepochs = 1\n"


def crayon(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``crayon ARGS`` run in this process (typer's runner) from ``tmp_path``, with its own cache: the
    exit status and output a user would see; an exception that escaped the command is its traceback."""
    env = {"CRAYON_CACHE_DIR": str(tmp_path / "cache"), "CRAYON_PROGRESS": "0", "METRIC_COLUMNS": "200"}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, list(args), env=env, prog_name="crayon", terminal_width=200)
    finally:
        os.chdir(here)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["crayon", *args], result.exit_code, result.stdout, stderr)


def config(tmp_path: Path, text: str, name: str = "run.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one error naming what is at fault, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def cached(tmp_path: Path, kind: str) -> list[Path]:
    return sorted((tmp_path / "cache" / kind).glob("*.pt"))


# 1. Non-finite values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[training]\nlr = inf\n", "training.lr"),
        ('[refiner.crayon-attention]\nw_no = inf\n', "refiner.crayon-attention.w_no"),
        ("[annotator]\nflip_rate = nan\n", "annotator.flip_rate"),
    ],
)
def test_non_finite_configuration_values_are_rejected_before_any_work(tmp_path, text, field):
    result = crayon(tmp_path, "run", "--config", config(tmp_path, text), "--out", "out")
    user_error(result, "run.toml", field, "must be a finite number")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_non_finite_option_in_a_study_names_its_line(tmp_path):
    spec = config(tmp_path, 'title = "t"\n[base.training]\nlr = -inf\n', "spec.toml")
    user_error(crayon(tmp_path, "study", "run", spec), "spec.toml:3: base.training.lr: must be a finite number")


@pytest.mark.slow
def test_training_that_diverges_stops_at_the_first_non_finite_loss_and_caches_nothing(tmp_path):
    result = crayon(tmp_path, "run", "--config", config(tmp_path, TINY.replace("epochs = 1", "epochs = 1\nlr = 1e30")), "--out", "out")
    user_error(result, "train original (ERM): the loss is", "at epoch 1, step", "nothing of it was cached")
    assert cached(tmp_path, "models") == [] and not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_a_refiner_that_diverges_gets_a_row_without_numbers_and_the_others_still_run(tmp_path):
    text = TINY + '[refiner.crayon-attention]\nepochs = 1\nlr = 1e30\n[refiner.finetune]\nlr = 1e-4\n'  # the control would follow lr
    result = crayon(tmp_path, "run", "--config", config(tmp_path, text), "--refiners", "crayon-attention,finetune", "--out", "out")
    user_error(result, "refine crayon-attention: the loss is", "epoch 1, step", "the other methods' results are in")
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["method"] for row in written["rows"]] == ["original", "crayon-attention", "finetune"]
    refused = written["rows"][1]
    assert refused["metrics"] == {} and "the loss is" in refused["details"]["refused"]  # no number of a diverged model
    assert 0 <= written["rows"][2]["metrics"]["wga"] <= 1
    assert sorted(p.name for p in (tmp_path / "out" / "models").iterdir()) == ["finetune", "original"]
    assert len(cached(tmp_path, "models")) == 1  # the original model, finite, is kept for the next run


# 2. Misspelled sections -------------------------------------------------------------------------------


def test_a_section_for_an_unregistered_refiner_is_an_error_with_the_close_names(tmp_path):
    result = crayon(tmp_path, "run", "--config", config(tmp_path, "[refiner.crayon-atention]\nepochs = 1\n"), "--out", "out")
    user_error(result, "run.toml: refiner.crayon-atention: unknown refiner 'crayon-atention' (did you mean 'crayon-attention'?)")
    assert not (tmp_path / "out").exists()


def test_a_study_option_axis_of_a_refiner_the_study_does_not_run_is_an_error(tmp_path):
    spec = config(tmp_path, 'title = "t"\n[grid]\nrefiner = ["crayon-pruning"]\n"refiner.crayon-attention.w_no" = [1.0]\n', "spec.toml")
    user_error(crayon(tmp_path, "study", "run", spec), "spec.toml:4", "refiner 'crayon-attention' is not among the study's refiners")


def test_an_unknown_component_names_the_file_and_field(tmp_path):
    result = crayon(tmp_path, "run", "--config", config(tmp_path, '[annotator]\nname = "saliency-oracel"\n'), "--out", "out")
    user_error(result, "run.toml: annotator: unknown annotation source 'saliency-oracel' (did you mean 'saliency-oracle'?)")


def test_a_bad_option_in_a_study_base_carries_the_base_prefix_and_its_line(tmp_path):
    spec = config(tmp_path, 'title = "t"\n[base.refiner.crayon-attention]\nw_no = "x"\n', "spec.toml")
    user_error(crayon(tmp_path, "study", "run", spec), "spec.toml:2:", "base.refiner.crayon-attention.w_no: Input should be a valid number")



def test_the_papers_alpha_and_beta_are_refused_with_their_mapping_in_a_file_an_override_and_a_study_axis(tmp_path):
    """The CRAYON paper's α weighs *yes* and β *no*: neither name may quietly land on the other answer."""
    file = config(tmp_path, "[refiner.crayon-attention]\nalpha = 1e7\n")
    user_error(crayon(tmp_path, "run", "--config", file, "--out", "out"), "'alpha' is not an option", "write w_yes = 10000000.0", "α → w_yes, β → w_no")
    user_error(crayon(tmp_path, "run", "--out", "out", "refiner.crayon-attention.beta=2e5"), "'beta' is not an option", "write w_no = 200000.0")
    spec = config(tmp_path, 'title = "t"\n[grid]\nrefiner = ["crayon-attention"]\n"refiner.crayon-attention.alpha" = [1e7]\n', "spec.toml")
    user_error(crayon(tmp_path, "study", "run", spec), "'alpha' is not an option", "write w_yes")
    assert not (tmp_path / "out").exists()

# 3. Missing groups ------------------------------------------------------------------------------------


def split_of(groups: list[int]) -> ImageSet:
    g = torch.tensor(groups)
    n = len(groups)
    return ImageSet(torch.zeros(n, 3, 4, 4), g // 2, g % 2, torch.zeros(n, 4, 4, dtype=torch.bool), tuple(f"i{i}" for i in range(n)), ("a", "b"), ("x", "y"))


def test_a_group_without_test_items_is_null_and_wga_says_over_how_many_groups():
    split = split_of([0, 0, 1, 2])  # no b/y
    predicted = torch.tensor([0, 0, 0, 1])  # a/x right, a/y right, b/x right
    found = GroupAccuracy().compute(Predictions(split, predicted, torch.full((4,), 0.25)))
    assert found["groups"] == {"a/x": 1.0, "a/y": 1.0, "b/x": 1.0, "b/y": None}
    assert found["wga"] == 1.0 and (found["groups_measured"], found["groups_total"]) == (3, 4)
    results = Results(dataset="d", backbone="b", seed=0, rows=[ResultRow(method="m", metrics=found)])
    assert results.groups_note() == "WGA and MGA over 3 of 4 groups: the test split has no item of the others."


@pytest.mark.slow
def test_missing_groups_are_warned_about_and_group_balanced_refuses_an_empty_training_group(tmp_path):
    text = TINY.replace("n_test = 64", "n_test = 3").replace("image_size = 32", "image_size = 32\ncorrelation = 1.0")
    result = crayon(tmp_path, "run", "--config", config(tmp_path, text), "--refiners", "group-balanced", "--out", "out")
    user_error(result, "refiner 'group-balanced' draws every group equally often", "no item of horizontal/blue, vertical/red")
    assert "the training split has no item of group(s)" in result.stderr and "the test split has no item of group(s)" in result.stderr
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    original = written["rows"][0]["metrics"]
    assert original["groups_measured"] == 3 and list(original["groups"].values()).count(None) == 1


# 4. The evaluation judge ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_reasonability_judge_is_noise_free_whatever_the_annotator_under_study(tmp_path):
    def reasonability(flip: float) -> tuple[dict, str]:
        data = {"dataset": {"n_train": 192, "n_val": 64, "n_test": 64, "image_size": 32}, "training": {"epochs": 1}, "annotator": {"flip_rate": flip}}
        results = Pipeline.from_config(parse_config(data), [], ArtefactCache(tmp_path / "cache")).run()
        return results.rows[0].metrics["reasonability"], results.judge

    honest, judge = reasonability(0.0)
    flipped, _ = reasonability(1.0)
    assert judge.startswith("saliency-oracle(") and "flip_rate=0.0" in judge
    assert flipped == honest  # the yardstick does not move with the annotator under study


# 5. Degenerate pruning --------------------------------------------------------------------------------


def test_pruning_almost_every_neuron_is_refused_with_the_counts_and_the_annotator():
    answers = torch.full((128,), int(Answer.NO))
    answers[0] = Answer.YES
    neurons = SimpleNamespace(answers=answers, annotator="neuron-mask(threshold=0.5)")
    context = SimpleNamespace(require_neurons=lambda refiner: neurons)
    with pytest.raises(CrayonError, match=r"would prune 127 of 128 neurons \(99%\), more than max_pruned = 0.9: the neuron annotator neuron-mask\(threshold=0.5\)") as info:
        neuron_answers(context, "crayon-pruning", 0.9)
    assert "concept sheets" in str(info.value)
    answers[:20] = Answer.YES  # 108 of 128: 84 %
    assert neuron_answers(context, "crayon-pruning", 0.9) is answers


# 6. Caches --------------------------------------------------------------------------------------------


def test_a_cached_model_that_does_not_fit_is_recomputed_with_one_warning(tmp_path, tiny_model, capsys):
    store = ArtefactCache(tmp_path)
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    name = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    store.save("models", "k", {"weights": {**state, name: torch.zeros(1)}, "curve": {}})
    calls = []
    value, was_cached = store.get_or_compute("models", "k", lambda: calls.append(1) or {"weights": state, "curve": {}}, fits_model(tiny_model))
    assert not was_cached and calls == [1] and value["weights"] is state
    assert store.get_or_compute("models", "k", lambda: calls.append(2), fits_model(tiny_model))[1]  # the recomputed entry replaced it
    store.load("models", "k", lambda v: "wrong")
    store.load("models", "k", lambda v: "wrong")
    warnings = capsys.readouterr().err
    assert f"weight {name!r} is torch.float32 (1,)" in warnings and warnings.count("does not fit this run (wrong)") == 1


def test_a_cached_tensor_of_another_item_count_is_recomputed(tmp_path):
    store = ArtefactCache(tmp_path)
    store.save("maps", "k", torch.zeros(5, 4, 4))
    value, was_cached = store.get_or_compute("maps", "k", lambda: torch.ones(6, 4, 4), fits_tensor(6, 3))
    assert not was_cached and value.shape == (6, 4, 4)


def test_a_failed_cache_write_keeps_the_artefact_in_memory(tmp_path, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    value, was_cached = ArtefactCache(tmp_path).get_or_compute("models", "k", lambda: {"w": torch.ones(2)})
    assert not was_cached and torch.equal(value["w"], torch.ones(2))
    assert "(No space left on device); carrying on with the models in memory" in capsys.readouterr().err
    assert list((tmp_path / "models").glob("*.tmp")) == []


def test_orphaned_temp_files_of_killed_writes_are_removed(tmp_path):
    (tmp_path / "maps").mkdir()
    orphan = tmp_path / "maps" / "k.abc123.tmp"
    orphan.write_bytes(b"half a tensor")
    ArtefactCache(tmp_path).get_or_compute("maps", "k", lambda: torch.zeros(1, 2, 2))
    assert not orphan.exists()
    (tmp_path / "results.json.xyz.tmp").write_text('{"half')
    Results(dataset="d", backbone="b", seed=0).write(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == []


def test_nothing_non_finite_is_cached(tmp_path):
    with pytest.raises(CrayonError, match="refusing to cache a maps artefact that holds inf or nan"):
        ArtefactCache(tmp_path).save("maps", "k", torch.tensor([1.0, math.nan]))


def test_the_cache_key_depends_on_the_torch_and_timm_versions(monkeypatch):
    before = cache_key(artefact="x")
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert cache_key(artefact="x") != before


def test_a_run_waiting_on_a_lock_says_who_holds_it_and_takes_over_when_that_process_is_gone(tmp_path, capsys):
    (tmp_path / "maps").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from crayon_plugins.run.cache import _locked; from pathlib import Path\n"
         "with _locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)", str(tmp_path / "maps" / "k.pt")],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGSTOP)  # a stopped process keeps its lock
    found = {}
    waiter = threading.Thread(target=lambda: found.update(value=ArtefactCache(tmp_path).get_or_compute("maps", "k", lambda: torch.zeros(1, 2, 2))))
    waiter.start()
    time.sleep(4)
    assert waiter.is_alive() and f"waiting for process {holder.pid} on" in capsys.readouterr().err
    holder.kill()  # its lock goes with it: the waiting run takes the entry over
    holder.wait()
    waiter.join(timeout=30)
    value, was_cached = found["value"]
    assert not waiter.is_alive() and torch.equal(value, torch.zeros(1, 2, 2)) and not was_cached


# 7. --out is checked first ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["run"], ["concepts"], ["study", "run", "SPEC"]])
def test_an_out_that_is_a_file_fails_before_any_work(tmp_path, command):
    (tmp_path / "taken").write_text("mine")
    spec = config(tmp_path, 'title = "t"\n[grid]\nrefiner = ["crayon-pruning"]\n', "spec.toml")
    result = crayon(tmp_path, *[spec if part == "SPEC" else part for part in command], "--out", "taken")
    user_error(result, "--out: taken is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "mine" and not (tmp_path / "cache").exists()


# 8. Workers die with their parent ---------------------------------------------------------------------


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table from /proc")
def test_sigkill_of_a_study_leaves_no_worker_running(tmp_path):
    spec = config(tmp_path, 'title = "t"\n[base.dataset]\nn_train = 192\nn_val = 64\nn_test = 64\nimage_size = 32\n[grid]\nrefiner = ["crayon-attention"]\nseed = [0, 1, 2, 3]\n', "spec.toml")
    env = {**os.environ, "CRAYON_CACHE_DIR": str(tmp_path / "cache"), "CRAYON_PROGRESS": "0"}
    study = subprocess.Popen([sys.executable, "-m", "crayon_plugins", "study", "run", spec, "--jobs", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    locks = tmp_path / "cache" / "models"
    while len(list(locks.glob("*.lock"))) < 2 and time.monotonic() < deadline:  # both workers are in a cell
        time.sleep(0.2)
    workers = {pid for pid in children(study.pid) if "spawn" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")}
    assert len(workers) == 2, "the study should have started its two workers"
    study.kill()
    study.wait()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


# 9. Errors, not tracebacks ----------------------------------------------------------------------------


def test_a_folder_or_a_non_utf8_file_as_configuration_or_study_is_an_error(tmp_path):
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    user_error(crayon(tmp_path, "run", "--config", str(tmp_path)), "is a folder, not a configuration file")
    user_error(crayon(tmp_path, "run", "--config", "binary.toml"), "binary.toml: the configuration file is not UTF-8 text")
    user_error(crayon(tmp_path, "study", "run", str(tmp_path)), "is a folder, not a study specification file")
    user_error(crayon(tmp_path, "study", "run", "binary.toml"), "binary.toml: the study specification file is not UTF-8 text")


def test_new_plugin_at_a_file_or_a_missing_folder_is_an_error_and_warns_of_a_taken_name(tmp_path):
    (tmp_path / "file").write_text("")
    user_error(crayon(tmp_path, "new-plugin", "mine", "--dir", "file"), "--dir file is a file, not a folder")
    user_error(crayon(tmp_path, "new-plugin", "mine", "--dir", "missing"), "--dir missing does not exist")
    taken = crayon(tmp_path, "new-plugin", "crayon-attention", "--dir", ".")
    assert taken.returncode == 0 and "warning: 'crayon-attention' is already registered (refiner of plugin 'crayon_plugins.plugins.refiners.crayon_attention')" in taken.stderr


def study_folder(tmp_path: Path) -> Path:
    out = tmp_path / "study"
    (out / "cells").mkdir(parents=True)
    (out / "spec.toml").write_text('title = "t"\n[grid]\nrefiner = ["crayon-pruning"]\nbudget = [0.1, 1.0]\n')
    return out


def test_study_report_on_a_damaged_results_csv_is_an_error_naming_the_file_and_row(tmp_path):
    out = study_folder(tmp_path)
    (out / "results.csv").write_text("refiner,seed,budget,metric,value\noriginal,0,,wga,0.5\ncrayon-pruning,0,0.1,wga,oops\n")
    user_error(crayon(tmp_path, "study", "report", "study"), "results.csv: damaged: row 3 has value 'oops', not a number")
    (out / "results.csv").write_bytes(b"\xff\xfe garbage")
    user_error(crayon(tmp_path, "study", "report", "study"), "results.csv: damaged")


def test_a_damaged_cell_record_is_ignored_and_its_cell_runs_again(tmp_path, capsys):
    from crayon_plugins.study.runner import read_record

    path = tmp_path / "abc.json"
    for text in ("{}", "[1]", '{"key": "abc", "refiner": "r", "seed": 0, "axes": {}, "metrics": {"wga": "x"}, "row": {}}'):
        path.write_text(text)
        assert read_record(path) is None
    path.write_text('{"key": "abc", "refiner": "r", "seed": 0, "axes": {}, "metrics": {"wga": 0.5}, "row": {}}')
    assert read_record(path)["metrics"] == {"wga": 0.5}
    assert capsys.readouterr().err.count("the cell runs again") == 3


# 11. Small but real -----------------------------------------------------------------------------------


def test_results_json_is_strict_json_with_null_and_follows_the_umask(tmp_path):
    results = Results(dataset="d", backbone="b", seed=0, rows=[ResultRow(method="m", metrics={"wga": math.nan, "groups": {"a": math.inf, "b": 0.5}})])
    old = os.umask(0o022)
    try:
        path = results.write(tmp_path)
    finally:
        os.umask(old)
    text = path.read_text()
    written = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in results.json"))
    assert written["rows"][0]["metrics"] == {"wga": None, "groups": {"a": None, "b": 0.5}}
    assert path.stat().st_mode & 0o777 == 0o644


def test_help_renders_square_brackets_and_whole_sentences(tmp_path):
    result = crayon(tmp_path, "concepts", "--help")
    assert result.returncode == 0 and "(configuration section [concepts])" in result.stdout
    assert "'NAME[test]'" in crayon(tmp_path, "new-plugin", "--help").stdout
    listing = crayon(tmp_path, "--help").stdout
    assert "plugins     List every component with its kind, name, plugin and module." in listing


# Hypothesis: no configuration gives a traceback or a non-finite value -------------------------------------

SECTIONS = ["training", "annotator", "budget", "panel", "selection", "evaluation", "dataset", "concepts", "refiner", "backbone", "seed", "metrics"]
FIELDS = ["lr", "epochs", "w_yes", "w_no", "alpha", "beta", "fraction", "flip_rate", "size", "rule", "name", "k", "n_train", "judge", "crayon-attention", "batch_size", "weight_decay"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.one_of(st.floats(), st.text(max_size=4)), max_size=3),
)
CONFIGS = st.dictionaries(
    st.sampled_from(SECTIONS),
    st.one_of(VALUES, st.dictionaries(st.sampled_from(FIELDS), st.one_of(VALUES, st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=2)), max_size=3)),
    max_size=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=CONFIGS)
def test_any_configuration_is_valid_and_finite_or_a_user_error(data, tmp_path):
    try:
        pipeline = Pipeline.from_config(parse_config(data, "generated.toml"), cache=ArtefactCache(tmp_path))
    except CrayonError as error:  # anything else is a traceback, and fails the test
        assert str(error).strip()
        return
    numbers = [pipeline.config.model_dump(mode="json")]
    while numbers:
        value = numbers.pop()
        if isinstance(value, dict):
            numbers.extend(value.values())
        elif isinstance(value, list):
            numbers.extend(value)
        elif isinstance(value, float):
            assert math.isfinite(value)
