"""Where a study's tasks run: worker processes on this machine, or a Ray cluster.

An executor runs tasks ``fn(*args)``, each with the study's number of torch threads (a convolution
sums in another order with another thread count, so the threads are the study's, never the
machine's), and says which node ran each. What to run and in which order is the runner's
(:mod:`.runner`): a study's numbers do not depend on the executor.

``local`` is a pool of spawned processes; ``ray`` submits Ray core tasks that declare their
resources (``threads`` CPUs, and one GPU when the device is CUDA), so Ray packs them onto nodes and
runs a task again on another node when its node dies.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar

import torch

from crayon_plugins.errors import ConfigError
from crayon_plugins.run.pipeline import resolve_device
from crayon_plugins.utils.progress import console, set_enabled

RAY_RETRIES = 3
"""How many times Ray runs a task again whose worker or node died (an error a task raises is not retried)."""
NODE_CHECK_SECONDS = 120


def node_name() -> str:
    """The Ray node id inside a Ray worker, else the host name."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return socket.gethostname()


def in_worker(threads: int, cwd: str, fn: Callable[..., Any], *args: Any) -> tuple[Any, str]:
    """Every task's body: ``threads`` torch threads, no progress bars, the study's working folder
    (relative paths in a configuration mean the same on every node that sees it); returns
    ``(fn(*args), node)``."""
    torch.set_num_threads(threads)
    set_enabled(False)
    console.quiet = True
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return fn(*args), node_name()


class Executor(ABC):
    """Runs tasks with ``threads`` torch threads each; a context manager (entered before any work)."""

    name: ClassVar[str]

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ConfigError(f"threads: must be at least 1, got {threads}", "threads")
        self.threads = threads
        self.cwd = os.getcwd()

    @abstractmethod
    def device(self, configured: str) -> str:
        """The device every task uses, ``cpu`` or ``cuda``, for the configured one (``auto`` too)."""

    @abstractmethod
    def start(self, cache_root: Path, device: str) -> str:
        """Start (and check) the workers before any work: the cache must be visible where tasks
        run. Returns a line that says where the tasks run."""

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start ``fn(*args)``; returns its handle."""

    @abstractmethod
    def wait(self, handles: Collection[Any]) -> list[Any]:
        """Block until at least one of ``handles`` has finished; the finished ones."""

    @abstractmethod
    def result(self, handle: Any) -> tuple[Any, str]:
        """``(value, node)`` of a finished task; raises the task's error."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _die_with(parent: int) -> None:
    """End this worker as soon as ``parent`` (the study's process) is gone, even if it was killed
    with SIGKILL and could not stop its workers: on Linux the kernel sends SIGKILL (``prctl``), and
    everywhere a watcher thread checks the parent every half second."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watcher below still ends the worker

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class LocalProcesses(Executor):
    """``jobs`` spawned worker processes on this machine (default: as many as the cores hold
    tasks of ``threads`` threads); they end with the study's process, even a killed one."""

    name = "local"

    def __init__(self, threads: int, jobs: int | None = None) -> None:
        super().__init__(threads)
        self.jobs = jobs if jobs is not None else max(1, (os.cpu_count() or 1) // threads)
        if self.jobs < 1:
            raise ConfigError(f"--jobs: must be at least 1, got {self.jobs}", "jobs")
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def device(self, configured: str) -> str:
        return resolve_device(configured).type

    def start(self, cache_root: Path, device: str) -> str:
        self.pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=_die_with, initargs=(os.getpid(),))
        return f"{self.jobs} process(es) on this machine, {self.threads} thread(s) each, on {device}"

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        assert self.pool is not None, "start() first"
        return self.pool.submit(in_worker, self.threads, self.cwd, fn, *args)

    def wait(self, handles: Collection[concurrent.futures.Future]) -> list[concurrent.futures.Future]:
        return list(concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED).done)

    def result(self, handle: concurrent.futures.Future) -> tuple[Any, str]:
        return handle.result()

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def sees_file(path: str, token: str) -> str | None:
    """On a node: ``None`` if ``path`` holds ``token`` and its folder takes a new file, else why not."""
    try:
        if Path(path).read_text() != token:
            return f"{path} holds something else: another folder is mounted there"
    except OSError as error:
        return f"cannot read {path}, which the study wrote ({error.strerror or error})"
    reply = Path(f"{path}.{os.getpid()}")
    try:
        reply.write_text(token)
        reply.unlink()
    except OSError as error:
        return f"cannot write {reply} ({error.strerror or error})"
    return None


JOIN_TIMEOUT = 60.0
"""Seconds to wait for a Ray cluster at a given address to accept this process before giving up
(Ray itself retries an unreachable head for minutes, silently)."""


def check_reachable(address: str, timeout: float) -> None:
    """A :class:`ConfigError` naming ``address`` (``host:port`` or ``ray://host:port``) unless a TCP
    connection to it opens within ``timeout`` seconds."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: not host:port (or ray://host:port, or auto)", "address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        why = "no answer" if isinstance(error, TimeoutError) else error.strerror or str(error)
        raise ConfigError(f"--address {address}: no Ray cluster reachable there within {timeout:g} s ({why}); start one with `ray start --head` or check the address", "address") from None


class RayCluster(Executor):
    """Ray core tasks on the cluster at ``address`` (``auto``: the running one that ``ray start``
    made; ``None``: a Ray instance started on this machine for the study and stopped after it)."""

    name = "ray"

    def __init__(self, threads: int, address: str | None = None) -> None:
        super().__init__(threads)
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray: Ray is not installed; install it with: pip install 'crayon-plugins[ray]'", "executor") from None
        self.ray = ray
        self.address = address
        self.join_timeout = JOIN_TIMEOUT
        self.task: Any = None

    def __enter__(self) -> RayCluster:
        joined: list = []
        if self.address in (None, "auto", "local"):
            self._join(joined)
        else:  # a given address: refused at once if nothing listens, and never waited on past the timeout
            check_reachable(self.address, min(10.0, self.join_timeout))
            thread = threading.Thread(target=self._join, args=(joined,), daemon=True)
            thread.start()
            thread.join(self.join_timeout)
            if not joined:
                raise ConfigError(f"--address {self.address}: no Ray cluster answered within {self.join_timeout:g} s (something listens there, but not a Ray head); check the address", "address")
        if isinstance(joined[0], ConfigError):
            raise joined[0]
        context = joined[0]
        self.dashboard = getattr(context, "dashboard_url", None)
        self.nodes = [node for node in self.ray.nodes() if node["Alive"]]
        return self

    def _join(self, joined: list) -> None:
        """``ray.init`` at :attr:`address`; appends its context, or the :class:`ConfigError` that says why not."""
        try:
            joined.append(self.ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False))
        except (ConnectionError, RuntimeError, ValueError) as error:
            joined.append(ConfigError(f"--address {self.address}: could not join a Ray cluster ({type(error).__name__}: {error})", "address"))

    def __exit__(self, *exc: object) -> None:
        self.ray.shutdown()

    def device(self, configured: str) -> str:
        has_gpu = any(node["Resources"].get("GPU", 0) >= 1 for node in self.nodes)
        if configured == "cuda" and not has_gpu:
            raise ConfigError("device: 'cuda' requested but no node of the Ray cluster has a GPU", "device")
        return configured if configured != "auto" else ("cuda" if has_gpu else "cpu")

    def start(self, cache_root: Path, device: str) -> str:
        gpus = 1 if device == "cuda" else 0
        need = {"CPU": self.threads, **({"GPU": gpus} if gpus else {})}
        if not any(all(node["Resources"].get(k, 0) >= v for k, v in need.items()) for node in self.nodes):
            have = ", ".join(f"{node['NodeManagerAddress']}: {node['Resources'].get('CPU', 0):g} CPU, {node['Resources'].get('GPU', 0):g} GPU" for node in self.nodes)
            wanted = " and ".join(f"{v} {k}" for k, v in need.items())
            raise ConfigError(f"threads = {self.threads}: every task needs {wanted}, and no node of the Ray cluster has as much ({have})", "threads")
        self._check_nodes_see(cache_root)
        # SPREAD: cells go round the nodes rather than filling the node the driver joined first.
        self.task = self.ray.remote(in_worker).options(num_cpus=self.threads, num_gpus=gpus, max_retries=RAY_RETRIES, retry_exceptions=False, scheduling_strategy="SPREAD")
        total = {kind: sum(node["Resources"].get(kind, 0) for node in self.nodes) for kind in ("CPU", "GPU")}
        where = f"Ray cluster of {len(self.nodes)} node(s), {total['CPU']:g} CPU(s), {total['GPU']:g} GPU(s); each task {self.threads} thread(s) on {device}"
        return where + (f"; Ray dashboard: http://{self.dashboard}" if self.dashboard else "")

    def _check_nodes_see(self, cache_root: Path) -> None:
        """Every alive node must read a file the study writes into the cache folder, and write one
        there: a node that cannot is an error naming it, before any work."""
        token = secrets.token_hex(16)
        probe = cache_root / f".node-check-{token}"
        cache_root.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
        strategy = self.ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
        check = self.ray.remote(sees_file)
        try:
            asked = {node["NodeID"]: check.options(num_cpus=0, scheduling_strategy=strategy(node["NodeID"], soft=False)).remote(str(probe), token) for node in self.nodes}
            ready, _ = self.ray.wait(list(asked.values()), num_returns=len(asked), timeout=NODE_CHECK_SECONDS)
            problems = []
            for node in self.nodes:
                ref = asked[node["NodeID"]]
                problem = self.ray.get(ref) if ref in ready else f"it did not answer within {NODE_CHECK_SECONDS} s"
                if problem is not None:
                    problems.append(f"node {node['NodeID']} at {node['NodeManagerAddress']}: {problem}")
        finally:
            probe.unlink(missing_ok=True)
        if problems:
            raise ConfigError(
                f"the cache folder {cache_root} is not visible from every node of the Ray cluster; it must be on a filesystem every node "
                f"mounts at the same path (set CRAYON_CACHE_DIR):\n" + "\n".join(problems),
                "cache",
            )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self.task is not None, "start() first"
        return self.task.remote(self.threads, self.cwd, fn, *args)

    def wait(self, handles: Collection[Any]) -> list[Any]:
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        return ready

    def result(self, handle: Any) -> tuple[Any, str]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as error:  # the task's own exception, not Ray's wrapper
            cause = getattr(error, "cause", None)
            raise (cause if isinstance(cause, Exception) else error) from None


EXECUTORS: dict[str, type[Executor]] = {executor.name: executor for executor in (LocalProcesses, RayCluster)}


def create_executor(name: str, threads: int, jobs: int | None = None, address: str | None = None) -> Executor:
    """The executor ``name`` (``local`` or ``ray``); errors name the option at fault."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: {name!r} is not an executor; choose one of {', '.join(EXECUTORS)}", "executor")
    if name == "local":
        if address is not None:
            raise ConfigError("--address: only for --executor ray", "address")
        return LocalProcesses(threads, jobs)
    if jobs is not None:
        raise ConfigError("--jobs: only for --executor local (Ray runs as many tasks as the cluster's CPUs hold)", "jobs")
    return RayCluster(threads, address)
