"""``crayon study run --executor ray`` on a real two-node Ray cluster on this machine's loopback
address (``ray start --head`` and ``ray start --address``, one CPU each), against ``--executor local``."""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import ray  # noqa: F401 - `make test` installs the [ray] extra: a missing Ray fails here, it is not skipped
from test_study import crayon, write_spec

from crayon_plugins.errors import ConfigError
from crayon_plugins.study.executors import LocalProcesses, create_executor
from crayon_plugins.study.spec import load_spec

RAY = str(Path(sys.executable).with_name("ray"))
GRID = 'refiner = ["crayon-pruning", "crayon-attention"]\nseed = [0, 1]\nbudget = [0.2, 1.0]'  # 2 × (1 + 2 × 2) = 10 cells
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "CRAYON_PROGRESS": "0"}  # loopback only: no token, no usage report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_unshare() -> bool:
    """Whether this process may start a program in its own mount namespace (root on Linux)."""
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True).returncode == 0


class Cluster:
    """A head and a worker node, one CPU each, started with ``ray start --block`` in their own
    process groups. The worker runs in its own mount namespace where ``hidden`` is an empty tmpfs
    (when this machine allows it): a folder the head sees and the worker does not."""

    def __init__(self, root: Path) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
        self.hidden = root / "hidden"
        self.hidden.mkdir()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **ENV}
        self.processes: list[subprocess.Popen] = []
        self.logs = root / "ray-logs"
        self.logs.mkdir()
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(100 * 2**20), "--temp-dir", str(self.temp), "--block"]
        self.namespaced = can_unshare()
        worker = [RAY, "start", "--address", self.address, *common]
        if self.namespaced:
            worker = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'mount -t tmpfs none "{self.hidden}" && exec "$@"', "sh", *worker]
        try:
            self._start("head", [RAY, "start", "--head", "--port", str(self.port), "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()), *common])
            self._wait_for_nodes(1)
            self._start("worker", worker)
            self._wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, command: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def _wait_for_nodes(self, count: int, seconds: float = 120) -> None:
        script = (
            "import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR'); deadline = time.monotonic() + float(sys.argv[3])\n"
            "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]) and time.monotonic() < deadline: time.sleep(0.2)\n"
            "sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= int(sys.argv[2]) else 1)"
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        done = subprocess.run([sys.executable, "-c", script, self.address, str(count), str(seconds)], env=self.env, capture_output=True, timeout=seconds + 30)
        if done.returncode != 0:
            logs = "\n".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in self.logs.iterdir())
            raise RuntimeError(f"the Ray cluster did not reach {count} node(s):\n{done.stderr.decode()[-2000:]}\n{logs}")

    def stop(self) -> None:
        """Stop both nodes, the worker first: SIGTERM to each ``ray start --block`` (which stops its
        node's processes), then SIGKILL to anything of this cluster still there. The head is given
        10 s: after its GCS is gone Ray 2.60's head waits 30 s to drain itself through that GCS."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        leftovers = self.leftovers()
        for leftover in leftovers:
            leftover.kill()
        psutil.wait_procs(leftovers, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)

    def leftovers(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if any(str(self.temp) in part for part in process.info["cmdline"] or ()):
                found.append(process)
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()
        assert not started.leftovers(), "the Ray cluster's processes outlived the tests"


def study(spec: Path, out: Path, cache: Path, *options: str) -> list[str]:
    return crayon("study", "run", str(spec), "--out", str(out), *options)


def env_with(cache: Path) -> dict:
    return {**os.environ, **ENV, "CRAYON_CACHE_DIR": str(cache)}


def records(folder: Path) -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in (folder / "cells").glob("*.json")}


def kill_one_running_task(process: subprocess.Popen, deadline: float) -> int | None:
    """SIGKILL one Ray worker process while it runs a task of the study; its pid."""
    while process.poll() is None and time.monotonic() < deadline:
        for worker in psutil.process_iter(["cmdline"]):
            if (worker.info["cmdline"] or [""])[0].startswith("ray::in_worker"):
                worker.kill()
                return worker.pid
        time.sleep(0.05)
    return None


@pytest.mark.slow(minutes=1)
def test_a_study_on_a_two_node_ray_cluster_matches_local_survives_a_killed_task_and_resumes(tmp_path, cluster):
    spec = write_spec(tmp_path, GRID)
    total = len({cell.key for cell in load_spec(spec).cells()})
    assert total == 10

    local = subprocess.run(study(spec, tmp_path / "local", tmp_path / "cache-local"), env=env_with(tmp_path / "cache-local"), capture_output=True, text=True)
    assert local.returncode == 0, local.stderr
    expected = (tmp_path / "local" / "results.csv").read_bytes()

    # The whole study on the cluster, from an empty cache of its own; one task's worker is killed mid-task and Ray runs it again.
    whole = subprocess.Popen(study(spec, tmp_path / "ray", tmp_path / "cache-ray", "--executor", "ray", "--address", cluster.address), env=env_with(tmp_path / "cache-ray"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = kill_one_running_task(whole, time.monotonic() + 300)
    out, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err
    assert killed is not None
    assert (tmp_path / "ray" / "results.csv").read_bytes() == expected  # byte-identical to the local executor's
    ran = records(tmp_path / "ray")
    assert len(ran) == total and killed not in {r["pid"] for r in ran.values()}
    assert len({r["node"] for r in ran.values()}) == 2  # cells ran on both nodes
    assert {r["threads"] for r in ran.values()} == {1} and {r["device"] for r in ran.values()} == {"cpu"}
    assert f"{total} cells, 0 already done, {total} to run on Ray cluster of 2 node(s), 2 CPU(s), 0 GPU(s)" in err
    assert "Ray dashboard: http://" in err

    # Killed half-way, then run again: no finished cell is computed again.
    cells = tmp_path / "killed" / "cells"
    command = study(spec, tmp_path / "killed", tmp_path / "cache-ray", "--executor", "ray", "--address", cluster.address)
    process = subprocess.Popen(command, env=env_with(tmp_path / "cache-ray"), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (cells.exists() and len(list(cells.glob("*.json"))) >= 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {path.name: path.read_bytes() for path in cells.glob("*.json")}
    assert 3 <= len(before) < total, "the kill should land half-way"
    resumed = subprocess.run(command, env=env_with(tmp_path / "cache-ray"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{total} cells, {len(before)} already done, {total - len(before)} to run" in resumed.stderr
    assert all(path.read_bytes() == before[path.name] for path in cells.glob("*.json") if path.name in before)
    assert len(list(cells.glob("*.json"))) == total
    assert (tmp_path / "killed" / "results.csv").read_bytes() == expected


@pytest.mark.slow
def test_a_node_that_cannot_see_the_cache_is_an_error_naming_it_before_any_work(tmp_path, cluster):
    if not cluster.namespaced:
        pytest.skip("this machine does not allow a mount namespace (unshare), so no node can be blind to a folder")
    spec = write_spec(tmp_path, GRID)
    cache = cluster.hidden / "cache"
    done = subprocess.run(study(spec, tmp_path / "out", cache, "--executor", "ray", "--address", cluster.address), env=env_with(cache), capture_output=True, text=True)
    assert done.returncode == 2
    worker = next(n for n in _nodes(cluster) if not n["head"])
    assert f"the cache folder {cache} is not visible from every node" in done.stderr
    assert f"node {worker['id']} at " in done.stderr and f"cannot read {cache}" in done.stderr
    assert not (tmp_path / "out" / "cells").exists() and not list(cache.glob("*/*.pt"))  # no work was done


@pytest.mark.slow
def test_threads_no_node_has_are_an_error_before_any_work(tmp_path, cluster):
    spec = tmp_path / "spec.toml"
    spec.write_text(write_spec(tmp_path, GRID).read_text().replace('question = "does it run?"', 'question = "does it run?"\nthreads = 2'))
    done = subprocess.run(study(spec, tmp_path / "out", tmp_path / "cache", "--executor", "ray", "--address", cluster.address), env=env_with(tmp_path / "cache"), capture_output=True, text=True)
    assert done.returncode == 2
    assert "threads = 2: every task needs 2 CPU, and no node of the Ray cluster has as much (" in done.stderr and "1 CPU, 0 GPU" in done.stderr
    assert not (tmp_path / "out" / "cells").exists()


@pytest.mark.slow
def test_a_task_error_comes_back_as_itself_not_wrapped_by_ray(tmp_path, cluster, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with create_executor("ray", 1, address=cluster.address) as executor:
        executor.start(tmp_path / "cache", "cpu")
        handle = executor.submit(Path.read_text, tmp_path / "no-such-file")
        with pytest.raises(FileNotFoundError, match="no-such-file"):
            executor.result(handle)
        (text, node) = executor.result(executor.submit(Path.read_text, Path(__file__)))
    assert text == Path(__file__).read_text() and node in {n["id"] for n in _nodes(cluster)}


def _nodes(cluster: Cluster) -> list[dict]:
    script = "import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print(json.dumps([{'id': n['NodeID'], 'head': 'node:__internal_head__' in n['Resources']} for n in ray.nodes() if n['Alive']]))"
    return json.loads(subprocess.run([sys.executable, "-c", script, cluster.address], env=cluster.env, capture_output=True, text=True, check=True).stdout)


def test_options_of_the_other_executor_and_unknown_executors_are_errors_naming_the_option():
    with pytest.raises(ConfigError, match="--jobs: only for --executor local"):
        create_executor("ray", 1, jobs=2)
    with pytest.raises(ConfigError, match="--address: only for --executor ray"):
        create_executor("local", 1, address="auto")
    with pytest.raises(ConfigError, match="--executor: 'slurm' is not an executor; choose one of local, ray"):
        create_executor("slurm", 1)
    with pytest.raises(ConfigError, match="threads: must be at least 1"):
        create_executor("local", 0)


def test_without_ray_the_ray_executor_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"Ray is not installed; install it with: pip install 'crayon-plugins\[ray\]'"):
        create_executor("ray", 1)


def _threads_and_pid() -> tuple[int, int]:
    import torch

    return torch.get_num_threads(), os.getpid()


def test_local_tasks_run_with_the_study_threads_in_another_process(tmp_path):
    with LocalProcesses(threads=1, jobs=2) as executor:
        executor.start(tmp_path, "cpu")
        handles = [executor.submit(_threads_and_pid) for _ in range(2)]
        (threads, pid), node = executor.result(handles[0])
    assert threads == 1 and pid != os.getpid() and node == socket.gethostname()
    assert LocalProcesses(threads=1).jobs == max(1, os.cpu_count() or 1)  # the cores fill with tasks of the study's threads


class InOrder(LocalProcesses):
    """Runs each task at once in this process, in submission order, and remembers what ran."""

    def __init__(self) -> None:
        super().__init__(threads=1, jobs=1)
        self.ran: list[tuple[str, int]] = []

    def start(self, cache_root, device):
        return "this process"

    def submit(self, fn, *args):
        self.ran.append((fn.__name__, args[0].seed))
        future = concurrent.futures.Future()
        try:
            future.set_result((fn(*args), "here"))
        except Exception as error:  # noqa: BLE001 - the runner reads it from the future
            future.set_exception(error)
        return future


def test_each_seed_shares_its_artefacts_once_before_its_cells_and_a_failure_names_the_seed(tmp_path, monkeypatch):
    from crayon_plugins.study import runner

    cells = load_spec(write_spec(tmp_path, GRID)).cells()

    def prepare_seed(config, refiners, cache_root):
        assert refiners == ["crayon-attention", "crayon-pruning"]
        if config.seed == 1:
            raise RuntimeError("disk full")

    monkeypatch.setattr(runner, "prepare_seed", prepare_seed)
    monkeypatch.setattr(runner, "run_cell", lambda cell, cache_root, models=None: {"key": cell.key, "refiner": cell.refiner, "seed": cell.seed, "axes": cell.axes, "metrics": {"wga": 0.5}, "row": {}, "device": "cpu"})
    stale = next(c for c in cells if c.seed == 0 and c.refiner == "crayon-pruning")
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / f"{stale.key}.json").write_text(json.dumps({"key": stale.key, "refiner": "crayon-pruning", "seed": 0, "axes": {}, "metrics": {"wga": 0.9}, "row": {}, "device": "cuda"}))
    executor = InOrder()
    records, failures = runner.run_cells(cells, tmp_path / "cells", executor, tmp_path / "cache")

    seed_0 = [fn for fn, seed in executor.ran if seed == 0]
    assert seed_0 == ["prepare_seed"] + ["<lambda>"] * 5  # once, before the seed's cells, the cuda record among them
    assert [fn for fn, seed in executor.ran if seed == 1] == ["prepare_seed"]  # its cells never started
    assert failures == ["seed 1, its original model and shared artefacts (5 cell(s) not run): RuntimeError: disk full"]
    assert sorted(r["seed"] for r in records.values()) == [0] * 5 and records[stale.key]["metrics"]["wga"] == 0.5
    assert json.loads((tmp_path / "cells" / f"{stale.key}.json").read_text())["node"] == "here"
