"""Study specifications, the resumable runner and the report."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from crayon_plugins.errors import ConfigError, CrayonError
from crayon_plugins.study.report import interval, write_report
from crayon_plugins.study.runner import run_study
from crayon_plugins.study.spec import load_spec

TINY_BASE = """
[base]
metrics = ["accuracy", "group-accuracy"]
[base.dataset]
n_train = 192
n_test = 64
image_size = 32
[base.training]
epochs = 1
[base.concepts]
k = 10
[base.refiner.crayon-attention]
epochs = 1
[base.refiner.crayon-pruning]
max_pruned = 1.0  # a one-epoch 32-px model's neurons are mostly judged irrelevant; these tests check the plumbing
"""


def write_spec(tmp_path, grid, name="spec.toml"):
    path = tmp_path / name
    path.write_text(f'title = "tiny"\nquestion = "does it run?"\n{TINY_BASE}\n[grid]\n{grid}\n')
    return path


GRID = 'refiner = ["crayon-pruning", "crayon-attention"]\nseed = [0]\nbudget = [0.05, 0.1, 0.2, 0.5, 1.0]\nselection = ["uniform", "loss-guided"]'


def test_errors_name_the_file_line_and_field(tmp_path):
    path = write_spec(tmp_path, 'budget = [0.1, 1.5]\nselection = ["uniform", "random"]\ncolour = [1]')
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    message = str(error.value)
    assert f"{path}:" in message and "grid.budget.1: Input should be less than or equal to 1 (got 1.5)" in message
    line = path.read_text().splitlines().index('budget = [0.1, 1.5]') + 1
    assert f"{path}:{line}: grid.budget.1" in message
    assert "grid.selection.1" in message and "grid.colour: Extra inputs are not permitted" in message


def test_cells_cover_the_grid_and_share_computations_where_the_strategy_cannot_matter(tmp_path):
    spec = load_spec(write_spec(tmp_path, GRID))
    cells = spec.cells()
    assert len(cells) == 1 + 2 * 5 * 2 and cells[0].refiner == "original"
    full = [c for c in cells if c.axes.get("budget") == 1.0 and c.refiner == "crayon-pruning"]
    assert len(full) == 2 and full[0].key == full[1].key  # at a full budget uniform and loss-guided coincide
    noisy = load_spec(write_spec(tmp_path, 'refiner = ["crayon-pruning"]\nflip_rate = [0.2]\nanswer_mix = ["Waterbirds"]', "noisy.toml")).cells()[1]
    assert noisy.config.annotator.params == noisy.config.neuron_annotator.params == {"flip_rate": 0.2, "answer_mix": "Waterbirds"}


def test_an_unknown_refiner_fails_before_any_work(tmp_path):
    path = write_spec(tmp_path, 'refiner = ["no-such-refiner"]')
    with pytest.raises(ConfigError, match="no-such-refiner"):
        run_study(path, tmp_path / "out", cache_root=tmp_path / "cache")
    assert not (tmp_path / "out").exists()


def crayon(*args):
    return [sys.executable, "-c", "from crayon_plugins.cli import main; main()", *args]


@pytest.mark.slow(minutes=1)
def test_a_study_killed_half_way_resumes_to_the_same_results_without_recomputing(tmp_path):
    spec = write_spec(tmp_path, GRID)
    env = {**os.environ, "CRAYON_CACHE_DIR": str(tmp_path / "cache"), "CRAYON_PROGRESS": "0"}
    subprocess.run(crayon("study", "run", str(spec), "--out", str(tmp_path / "whole")), env=env, check=True, capture_output=True)
    whole = (tmp_path / "whole" / "results.csv").read_text()

    cells = tmp_path / "killed" / "cells"
    process = subprocess.Popen(crayon("study", "run", str(spec), "--out", str(tmp_path / "killed")), env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (cells.exists() and len(list(cells.glob("*.json"))) >= 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the runner and its worker, mid-cell
    process.wait()
    before = {path.name: path.read_bytes() for path in cells.glob("*.json")}
    total = len({c.key for c in load_spec(spec).cells()})
    assert 3 <= len(before) < total, "the kill should land half-way"

    resumed = subprocess.run(crayon("study", "run", str(spec), "--out", str(tmp_path / "killed")), env=env, check=True, capture_output=True, text=True)
    assert f"{len(before)} already done, {total - len(before)} to run" in resumed.stderr
    assert (tmp_path / "killed" / "results.csv").read_text() == whole
    after = {path.name: path.read_bytes() for path in cells.glob("*.json")}
    assert all(after[name] == content for name, content in before.items())  # finished cells untouched
    pids = {json.loads(content)["pid"] for name, content in after.items() if name not in before}
    assert pids and not pids & {json.loads(content)["pid"] for content in before.values()}
    assert all(json.loads(content)["metrics"]["wga"] >= 0 for content in before.values())  # whole records only: writes are atomic

    frame = pd.read_csv(tmp_path / "killed" / "results.csv")
    assert list(frame.columns) == ["refiner", "seed", "budget", "selection", "metric", "value"]
    pruned = frame[(frame.refiner == "crayon-pruning") & (frame.metric == "neurons.annotated")]
    assert sorted(pruned.value.unique()) == [6.0, 13.0, 26.0, 64.0, 128.0]  # of 128 neurons: round(share · 128)
    attention = frame[(frame.refiner == "crayon-attention") & (frame.metric == "maps.annotated")]
    assert sorted(attention.value.unique()) == [10.0, 19.0, 38.0, 96.0, 192.0]


def test_interval_is_the_t_interval_over_seeds():
    values = pd.Series([0.5, 0.6, 0.7])
    found = interval(values)
    assert found["mean"] == pytest.approx(0.6) and found["n"] == 3
    assert found["half"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert math.isnan(interval(pd.Series([0.4]))["half"])


def test_the_report_states_the_smallest_budget_near_the_peak(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "spec.toml").write_text('title = "budget"\n[grid]\nrefiner = ["crayon-attention"]\nseed = [0, 1]\nbudget = [0.01, 0.1, 1.0]\nselection = ["uniform"]\n')
    wga = {0.01: 0.50, 0.1: 0.85, 1.0: 0.86}
    rows = [("original", seed, "", "", "wga", 0.1) for seed in (0, 1)]
    rows += [("crayon-attention", seed, b, "uniform", "wga", v + (0.01 if seed else -0.01)) for b, v in wga.items() for seed in (0, 1)]
    pd.DataFrame(rows, columns=["refiner", "seed", "budget", "selection", "metric", "value"]).to_csv(out / "results.csv", index=False)
    report = write_report(out).read_text()
    assert "peak 86.0% at budget 1; smallest budget within 2 points of the peak: 0.1; at 0.1: 85.0% (within 2 points)" in report
    assert "Original model (ERM): WGA 10.0" in report and (out / "wga-budget.png").stat().st_size > 10_000
    assert "| crayon-attention | uniform | 50.0 ± 12.7 | 85.0 ± 12.7 | 86.0 ± 12.7 |" in report


def test_a_study_of_data_without_a_group_attribute_gets_no_wga_report_and_says_why(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "spec.toml").write_text('title = "no groups"\n[grid]\nrefiner = ["crayon-attention"]\nseed = [0]\n')
    rows = [("original", 0, "worst_class_accuracy", 0.4), ("crayon-attention", 0, "worst_class_accuracy", 0.6)]
    pd.DataFrame(rows, columns=["refiner", "seed", "metric", "value"]).to_csv(out / "results.csv", index=False)
    with pytest.raises(CrayonError, match="no cell measured WGA \\(the dataset has no group attribute"):
        write_report(out)
    assert not (out / "report.md").exists()


def test_any_refiner_option_is_an_axis_of_its_refiners_cells(tmp_path):
    grid = 'refiner = ["crayon-attention", "finetune"]\n"refiner.crayon-attention.w_no" = [10.0, 100.0]\n"refiner.crayon-attention.w_yes" = [1.0, 2.0]'
    spec = load_spec(write_spec(tmp_path, grid))
    assert spec.grid.varied() == ["refiner.crayon-attention.w_no", "refiner.crayon-attention.w_yes"]
    attention = [c for c in spec.cells() if c.refiner == "crayon-attention"]
    assert sorted((c.config.refiner["crayon-attention"]["w_no"], c.config.refiner["crayon-attention"]["w_yes"]) for c in attention) == [(10.0, 1.0), (10.0, 2.0), (100.0, 1.0), (100.0, 2.0)]
    assert all(c.config.refiner["crayon-attention"]["epochs"] == 1 for c in attention)  # the base's options stay
    finetune = [c for c in spec.cells() if c.refiner == "finetune"]
    assert len(finetune) == 1 and finetune[0].axes == {}  # another refiner's options are not finetune's axes
    with pytest.raises(ConfigError, match="grid.colour: Extra inputs are not permitted"):
        load_spec(write_spec(tmp_path, 'colour = [1]', "bad.toml"))
    with pytest.raises(ConfigError, match="no_such_option"):
        run_study(write_spec(tmp_path, '"refiner.crayon-attention.no_such_option" = [1]', "bad2.toml"), tmp_path / "out", cache_root=tmp_path / "cache")


def test_the_report_picks_option_values_on_validation_and_pairs_each_cell_with_its_seeds_original(tmp_path):
    from crayon_plugins.study.report import _options_section, _paired, _paired_section

    w_no, w_yes = "refiner.crayon-attention.w_no", "refiner.crayon-attention.w_yes"
    rows = []
    for seed, base in ((0, 0.2), (1, 0.4)):
        for a in (10.0, 100.0):
            for b in (1.0, 2.0):
                # test WGA best at w_no 100; validation best at w_no 10 (the report must not peek at test)
                rows.append({"refiner": "crayon-attention", "seed": seed, w_no: a, w_yes: b, "wga": base + (0.3 if a == 100.0 else 0.1) + 0.01 * b, "val.wga": 0.9 if a == 10.0 else 0.5})
    cells = pd.DataFrame(rows)
    original = pd.DataFrame([{"refiner": "original", "seed": 0, "wga": 0.2}, {"refiner": "original", "seed": 1, "wga": 0.4}])
    paired = _paired(cells, original)
    assert paired["dwga"].tolist() == pytest.approx([0.11, 0.12, 0.31, 0.32] * 2)  # the same change on both seeds
    text = "\n".join(_options_section(paired, [w_no, w_yes], "val-wga", tmp_path))
    assert f"`{w_no}` picked on validation: **10.0**" in text and "best on test: 100.0" in text
    assert "Validation could not separate 1.0, 2.0" in text  # w_yes: validation 0.7 at both values
    assert text.count("Validation could not separate") == 1
    assert (tmp_path / "wga-crayon-attention-w_no-w_yes.png").exists()
    summary = "\n".join(_paired_section(paired, [w_no, w_yes]))
    assert "11.0 ± 0.0" in summary and "32.0 ± 0.0" in summary  # zero spread: the seeds' originals are paired out


@pytest.mark.parametrize("address", ["127.0.0.1:{closed}", "ray://127.0.0.1:{closed}"])
def test_an_unreachable_ray_address_fails_within_the_timeout_naming_it(address):
    import socket
    import time

    from crayon_plugins.study.executors import check_reachable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once the probe is closed
    address = address.format(closed=closed)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"--address {re.escape(address)}: no Ray cluster reachable there within 1 s"):
        check_reachable(address, 1.0)
    assert time.monotonic() - start < 3


def test_an_address_where_something_listens_but_no_ray_head_answers_fails_within_the_timeout():
    """In a process of its own: the abandoned join keeps a Ray client thread trying in the background."""
    import socket

    script = (
        "import sys, time\n"
        "from crayon_plugins.errors import ConfigError\n"
        "from crayon_plugins.study.executors import RayCluster\n"
        "cluster = RayCluster(1, sys.argv[1])\n"
        "cluster.join_timeout = 5.0\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    with cluster:\n"
        "        pass\n"
        "except ConfigError as error:\n"
        "    print(f'{time.monotonic() - start:.1f}', error)\n"
    )
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        done = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=120)
    seconds, _, message = done.stdout.strip().partition(" ")
    assert re.match(rf"--address {re.escape(address)}: (no Ray cluster answered within 5 s|could not join a Ray cluster)", message), done.stdout + done.stderr
    assert float(seconds) < 8
