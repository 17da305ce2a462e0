"""Shared fixtures: one behaviour suite for every runner, and teardown checks for leaks."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import procflow.console
from procflow.ownership import current_token, owned_segments
from procflow.task_runners import ProcessPoolTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

RUNNERS = {
    "process": lambda: ProcessPoolTaskRunner(max_workers=2),
    "thread": lambda: ThreadPoolTaskRunner(max_workers=4),
    "sequential": SequentialTaskRunner,
    "dask": None,  # needs the cluster below
}

procflow.console.SHOW_CLOSING_SUMMARY = False  # the test session's own flow runs: no summary at its exit


_SESSION_CHILDREN: set[int] = set()  # processes of session fixtures (the Dask cluster's nannies)


@pytest.fixture(scope="session")
def dask_cluster():
    """A real Dask cluster on loopback: a scheduler and two worker processes."""
    from distributed import LocalCluster

    before = {child.pid for child in psutil.Process().children()}
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0")
    _SESSION_CHILDREN.update(child.pid for child in psutil.Process().children() if child.pid not in before)
    yield cluster
    cluster.close()


def values(returned):
    """What a flow returned with its States read: a flow returns the States of the futures it
    returns, as Prefect's does (SPEC §1); these tests check the values behind them."""
    from procflow.states import State

    if isinstance(returned, State):
        return returned.result(raise_on_failure=False)
    if isinstance(returned, (list, tuple)) and not hasattr(returned, "_fields"):
        return type(returned)(values(item) for item in returned)
    if type(returned) is dict:
        return {key: values(item) for key, item in returned.items()}
    return returned


class ValueFlow:
    """A flow whose plain calls give `values()` of what it returns; `return_state=True` as is."""

    def __init__(self, flow_object):
        self.flow = flow_object

    def __call__(self, *args, **kwargs):
        returned = self.flow(*args, **kwargs)
        return returned if kwargs.get("return_state") else values(returned)

    def __getattr__(self, name):
        return getattr(self.flow, name)


def owner_token(pid: int) -> str:
    """The procflow owner token of a running process: the lock file it holds in /dev/shm."""
    # The lock is taken on a temp name, then linked into place: /proc shows the temp name.
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            path = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        match = re.match(r"/dev/shm/\.procflow-([a-z0-9]{7})\.", path)
        if match:
            return match.group(1)
    raise AssertionError(f"process {pid} holds no procflow lock file")


@pytest.fixture(params=sorted(RUNNERS))
def runner(request):
    """A fresh task runner of each kind (the process pool underneath is reused)."""
    if request.param == "dask":
        from procflow.dask import DaskTaskRunner

        return DaskTaskRunner(address=request.getfixturevalue("dask_cluster").scheduler_address)
    return RUNNERS[request.param]()


# Threads that live as long as the process pool they serve (reused across flow runs).
_POOL_THREADS = ("procflow-worker-watch",)


def _procflow_threads() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.name.startswith("procflow") and t.ident}


def _pool_workers() -> set[int]:
    """Living loky worker processes of this process (the reused pool's, or a leaked pool's)."""
    found = set()
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "popen_loky" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def _stray_workers() -> set[int]:
    """Loky workers that are not those of procflow's one reused pool: a pool left behind, or a
    replaced pool's that are still ending."""
    from procflow.runners import processes

    pool = processes._pool
    ours = pool[1].pids() if pool is not None else set()
    return _pool_workers() - ours


def _children() -> dict[int, str]:
    """Child processes that are not the reused pool's: loky workers and resource trackers stay."""
    found = {}
    for child in psutil.Process().children():
        if child.pid in _SESSION_CHILDREN:
            continue
        try:
            command = " ".join(child.cmdline())
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if "loky" not in command and "resource_tracker" not in command and "distributed" not in command:
            found[child.pid] = command
    return found


@pytest.fixture(autouse=True)
def result_store(tmp_path_factory, monkeypatch):
    """Each test persists results in a store of its own (subprocesses inherit it): a cache
    filled by one test never serves another, nor a user's real ~/.procflow/storage."""
    directory = tmp_path_factory.mktemp("results")
    monkeypatch.setenv("PROCFLOW_RESULTS_LOCAL_STORAGE_PATH", str(directory))
    return directory


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves shared-memory segments, engine threads, procflow threads or
    child processes behind (after a grace of a few seconds for ones that are ending)."""
    threads_before, children_before = set(_procflow_threads()), set(_children())
    strays_before = _stray_workers()  # a user-level loky pool of an earlier test (joblib's) stays
    yield
    left = owned_segments(current_token())  # a flow run frees its segments and empties the reuse pool when it ends
    assert not left, f"shared-memory segments left behind: {left}"
    engines = [t for t in threading.enumerate() if t.name == "procflow-engine"]
    # the detached context (tasks submitted outside a flow) keeps one engine for the process
    assert len(engines) <= 1, f"engine threads left running: {engines}"
    deadline = time.monotonic() + 5
    while True:
        threads = {ident: name for ident, name in _procflow_threads().items()
                   if ident not in threads_before and name != "procflow-engine" and name not in _POOL_THREADS}
        children = {pid: command for pid, command in _children().items() if pid not in children_before}
        strays = _stray_workers() - strays_before
        if not (threads or children or strays) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not threads, f"procflow threads left running: {sorted(threads.values())}"
    assert not children, f"child processes left running: {children}"
    assert not strays, f"worker processes of a pool that is not procflow's reused one left running: {sorted(strays)}"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    """Messages logged under `procflow` while the test runs."""
    handler = Records()
    logger = logging.getLogger("procflow")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture
def interrupt_blocked_flow(tmp_path):
    """Run a flow of `count` tasks stuck in `time.sleep` (C code) with `procflow run`, press
    Ctrl-C once they all started; returns (exit code, seconds to exit, stderr, the pids
    of the processes the flow had started)."""
    def interrupt(runner_arguments: list[str], count: int) -> tuple[int, float, str, list[int]]:
        started = tmp_path / "started"
        started.mkdir()
        script = tmp_path / "sleepers.py"
        script.write_text(textwrap.dedent(f"""
            import os, time
            from procflow import flow, task

            @task
            def sleeper(i):
                open(os.path.join({str(started)!r}, str(i)), "w").close()
                time.sleep(120)

            @flow
            def sleepers():
                return sleeper.map(range({count}))
        """))
        parent = subprocess.Popen([sys.executable, "-m", "procflow", "run", str(script), *runner_arguments],
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(os.listdir(started)) < count:
            assert time.monotonic() < deadline and parent.poll() is None, "the tasks did not start"
            time.sleep(0.05)
        children = [child.pid for child in psutil.Process(parent.pid).children(recursive=True)]
        interrupted = time.monotonic()
        parent.send_signal(signal.SIGINT)
        code = parent.wait(timeout=60)
        elapsed = time.monotonic() - interrupted
        return code, elapsed, parent.communicate()[1], children

    return interrupt


class Terminal:
    """A command run under a real pseudo-terminal; `screen()` is what it drew, escape codes removed."""

    def __init__(self, argv: list[str], **env: str) -> None:
        import pty

        self._main, child = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child,
                                        env={**os.environ, "COLUMNS": "200", "LINES": "40", **env})
        os.close(child)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._main, 65536)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            self._chunks.append(data)

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        os.close(self._main)
        return code

    def screen(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(self._chunks).decode(errors="replace"))
