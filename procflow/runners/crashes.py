"""Which run a dead worker was running, and how to say why it died.

Each worker keeps a tiny scoreboard file (`worker_process.BOARD_FORMAT`: run id, start time)
in the parent's private directory (`directory.WorkerBoards`).
Each worker has its own loky executor (`slots.py`): when one reports itself broken, its
one worker is dead, and its scoreboard names the one run to charge the crash to (the
runs queued behind it in that worker are `Lost`: run again). A `WorkerWatch` thread
samples worker memory, for "probably out of memory".
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from typing import Any

import psutil
from loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from ..messages import Outcome, Status, WorkItem
from .directory import WorkerBoards

def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def kill_with_its_children(pid: int) -> None:
    """SIGKILL a worker and every process its task started: a timed-out task's subprocesses
    would otherwise outlive it. Stopped first, so it starts none while they are listed;
    its process group (a worker leads its own) catches those that left the tree."""
    try:
        worker = psutil.Process(pid)
        worker.suspend()
        family = worker.children(recursive=True)
        worker.kill()
    except psutil.NoSuchProcess:
        family = []
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    kill_group(pid)


def kill_group(pid: int) -> None:
    """What a crashed worker's task started, reparented to init but still in its group."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # no such group (left already), or not ours
        pass


class WorkerWatch:
    """Samples each worker's RSS twice a second, to report it when the worker dies."""

    INTERVAL = 0.5

    def __init__(self, boards: WorkerBoards) -> None:
        self.boards = boards
        self.last_rss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procflow-worker-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            try:
                pids = list(self.boards.read())
            except OSError:  # the directory goes at interpreter exit
                return
            for pid in pids:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                if rss:  # a dying worker (a zombie) reads 0: keep what it had when alive
                    self.last_rss[pid] = rss

    def stop(self) -> None:
        self._stop.set()


# broken pool -> run id -> (pid, exit code, last rss); shared, like the pool, by concurrent flow runs
_VICTIMS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_VICTIMS_LOCK = threading.Lock()


class CrashLedger:
    """Outcomes for the runs of a batch whose pool broke.

    The one run that was in the dead worker is `Crashed`; a run whose worker we killed
    for its timeout is `TimedOut`; every other run was only in flight and is `Lost`
    (run again, no retry spent). loky fails the pending futures before it kills the
    surviving workers, so the first look at a broken pool sees only the crashed worker
    dead; the survivors' boards are then forgotten, so a later look cannot blame them.
    """

    def __init__(self, boards: WorkerBoards, watch: WorkerWatch) -> None:
        self.boards = boards
        self.watch = watch
        self.timed_out: set[int] = set()  # runs whose worker the runner killed

    def kill_overdue(self, run_id: int, timeout: float, grace: float) -> float | None:
        """A run past its deadline: kill the worker running it (its outcome is then `TimedOut`)
        and what its task started; or, for one that started late or not yet, seconds to wait."""
        for pid, (running, started) in self.boards.read().items():
            if running == run_id:
                overdue = started + timeout + grace - time.time()
                if overdue > 0:
                    return overdue  # it started late (queued behind other work)
                self.timed_out.add(run_id)
                kill_with_its_children(pid)
                return None
        return timeout  # not started yet: ask again later

    def outcomes(self, items: tuple[WorkItem, ...], error: BaseException, pool: Any) -> list[Outcome]:
        if isinstance(error, ShutdownExecutorError):
            return [Outcome(item.run_id, Status.CANCELLED) for item in items]
        if not isinstance(error, BrokenProcessPool):
            return [Outcome(item.run_id, Status.FAILED, error=error) for item in items]
        victims = self._victims_of(pool)
        outcomes = []
        for item in items:
            if item.run_id in self.timed_out:
                self.timed_out.discard(item.run_id)
                outcomes.append(Outcome(item.run_id, Status.TIMED_OUT, error=TimeoutError(
                    f"Task run {item.who.run_name!r} exceeded timeout_seconds={item.timeout} and did not stop; "
                    "its worker process was killed and replaced")))
            elif item.run_id in victims:
                message = describe_crash(item.who.run_name, *victims[item.run_id])
                outcomes.append(Outcome(item.run_id, Status.CRASHED, error_text=message))
            else:
                outcomes.append(Outcome(item.run_id, Status.LOST))
        return outcomes

    def _victims_of(self, pool: Any) -> dict[int, tuple[Any, ...]]:
        """Worked out once per broken pool, for every flow run using it (the pool is shared)."""
        with _VICTIMS_LOCK:
            if pool not in _VICTIMS:
                _VICTIMS[pool] = self._look_at(pool)
            victims: dict[int, tuple[Any, ...]] = _VICTIMS[pool]
            return victims

    def _look_at(self, pool: Any) -> dict[int, tuple[Any, ...]]:
        processes = dict(getattr(pool, "_processes", None) or {})  # loky's pid -> process
        boards = self.boards.read()
        victims = {}
        for pid, process in processes.items():
            run_id = boards.get(pid, (0, 0.0))[0]
            if not alive(pid):
                kill_group(pid)
                if run_id:
                    victims[run_id] = (pid, process.exitcode, self.watch.last_rss.get(pid))
                self.boards.remove_orphans(pid)
                self.boards.forget(pid)
            else:  # loky kills it next; what it was making goes at the end of the flow run
                self.boards.forget(pid, made=False)
        return victims


def describe_crash(run_name: str, pid: int, exitcode: int | None, last_rss: int | None) -> str:
    """`Worker process 4242 running task run 'boom-0' died: killed by signal SIGKILL (-9) ...`"""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by signal {signal.Signals(-exitcode).name} ({exitcode})"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    elif exitcode is not None:
        how = f"exited with code {exitcode}"
    else:
        how = "ended unexpectedly"
    message = f"Worker process {pid} running task run '{run_name}' died: {how}."
    if last_rss:
        message += f" Its last RSS was {last_rss / 2**20:.0f} MiB"
        total = psutil.virtual_memory().total
        if exitcode == -signal.SIGKILL and last_rss > 0.5 * total:
            message += f" of {total / 2**30:.0f} GiB: probably out of memory (the kernel's OOM killer)"
        message += "."
    return message
