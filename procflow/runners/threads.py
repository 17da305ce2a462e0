"""Threads in the flow's process: `ThreadPoolTaskRunner` (I/O-bound work) and `SequentialTaskRunner`.

Argument slots are filled with the upstreams' values in the worker thread
(`skeleton.fill`), prints and run
loggers log straight away, and a run past its timeout gets a `TimeoutError` raised in
its thread (it fires when the thread next runs Python code).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .. import settings
from ..current import TaskRunInfo
from ..interrupts import interrupt_thread
from ..messages import Outcome, Status
from ..skeleton import fill
from ..artifacts import ARTIFACT
from ..runlog import task_emitter
from ..states import LazyResult
from ..execution import RunTimedOut, execute
from ..results import store
from .base import Call, DirectUse, Sink, worker_count


TASK_THREAD_PREFIX = "procflow-task"


class RunCancelled(KeyboardInterrupt):
    """Raised in a task's thread by `cancel_running()` (Ctrl-C): a KeyboardInterrupt the task
    raises itself is its own failure instead."""


class ThreadPoolTaskRunner(DirectUse):
    """Runs tasks on threads: same semantics as the process runner, for I/O-bound tasks."""

    name = "thread"
    depth_first = True
    interrupt_grace = 0.0
    fuses = False

    def __init__(self, max_workers: int | None = None) -> None:
        prefects = settings.PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS.value()  # Prefect's setting, then its default
        self.max_workers = worker_count(max_workers if max_workers is not None else prefects,
                                        min(32, (os.cpu_count() or 1) + 4))

    def start(self, sink: Sink) -> ThreadSession:
        return ThreadSession(self.max_workers, sink)


class ThreadSession:
    """One flow run's threads: its own pool, its running runs' threads, its count in flight."""

    interrupt_grace = 0.0
    fuses = False

    def __init__(self, max_workers: int, sink: Sink) -> None:
        self.max_workers = max_workers
        self._sink = sink
        self._abandon = False
        self._threads: dict[int, int] = {}  # run id -> thread id, while it runs
        self._lock = threading.Lock()
        self._in_flight = 0
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers, thread_name_prefix=TASK_THREAD_PREFIX)

    def busy_workers(self) -> int:
        """Threads inside a run now (for the live view)."""
        return len(self._threads)

    def capacity(self) -> int:
        return self.max_workers - self._in_flight

    def submit(self, calls: list[Call]) -> None:
        with self._lock:
            self._in_flight += len(calls)
        assert self._pool is not None, "session used after shutdown()"
        for call in calls:
            self._pool.submit(self._run, call)

    def _run(self, call: Call) -> None:
        with self._lock:
            self._threads[call.run_id] = threading.get_ident()
        try:
            outcome = self._execute(call)
        except RunTimedOut as late:  # raised between the call and our bookkeeping
            outcome = Outcome(call.run_id, Status.TIMED_OUT, error=late, worker=threading.current_thread().name)
        except RunCancelled:  # cancel_running()
            outcome = Outcome(call.run_id, Status.CANCELLED, worker=threading.current_thread().name)
        except KeyboardInterrupt as raised:  # the task's own: its failure, as on the process runner
            outcome = Outcome(call.run_id, Status.FAILED, error=raised, worker=threading.current_thread().name)
        with self._lock:
            self._threads.pop(call.run_id, None)
            self._in_flight -= 1
        self._sink([outcome])

    def _execute(self, call: Call) -> Outcome:
        to_log = task_emitter(call.who.run_name)
        artifacts: list[tuple[int, str]] = []  # they go back with the outcome, as a worker's do

        def emit(level: int, text: str) -> None:
            if level == ARTIFACT:
                artifacts.append((level, text))
            else:
                to_log(level, text)

        try:
            if call.inputs:
                values = [slot.value() for slot in call.inputs]
                args, kwargs = fill(call.args, values), fill(call.kwargs, values)
            else:
                args, kwargs = call.args, call.kwargs
        except Exception as unloadable:  # noqa: BLE001 - an upstream's stored result failed to load
            return Outcome(call.run_id, Status.FAILED, error=unloadable, worker=threading.current_thread().name)
        run = TaskRunInfo.of(call.who, call.fn, args, kwargs)
        status, value, error, start, end = execute(run, call.log_prints, emit)
        if call.persist is not None and status is Status.COMPLETED:
            store.write(call.persist, value, end - start, call.who.run_name)
        return Outcome(call.run_id, status, value, error, start=start, end=end,
                       worker=threading.current_thread().name, logs=tuple(artifacts))

    def interrupt(self, run_id: int, timeout: float) -> float | None:
        with self._lock:
            thread_id = self._threads.get(run_id)
        if thread_id is not None:
            interrupt_thread(thread_id, RunTimedOut)
        return None

    def cancel_running(self) -> None:
        """Ctrl-C: interrupt each running task at its next bytecode; one blocked in C code
        cannot be, so the flow run stops waiting for them (`shutdown`)."""
        with self._lock:
            running = list(self._threads.values())
            self._abandon = True
        for thread_id in running:
            interrupt_thread(thread_id, RunCancelled)

    def release(self, result: LazyResult) -> None:
        pass

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not self._abandon, cancel_futures=True)
            self._pool = None


ConcurrentTaskRunner = ThreadPoolTaskRunner


class SequentialTaskRunner(ThreadPoolTaskRunner):
    """One run at a time, in submission order among ready runs, in the flow's process."""

    name = "sequential"
    depth_first = False

    def __init__(self) -> None:
        super().__init__(max_workers=1)
