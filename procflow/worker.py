"""Executing runs inside a worker process: `run_batch()` (one call's execution: `execution.py`).

`run_batch` is the process runner's entry point, a short free function over this
process's one `Worker`: load each function once per worker, unpickle each run's arguments
(which maps the shared-memory results they refer to), run with a deadline when the task
has a timeout, store the result (large buffers into shared memory) and report one
`Outcome` per run. Before each run the worker writes the run's id into its scoreboard
(`worker_process.Scoreboard`), so that the parent can charge a crash of this process to
exactly that run. The process's own life (its start, its watch on the parent) is
`worker_process.py`'s; errors cross as `portable_errors.py` makes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import time
from typing import Any, Callable

from . import worker_process
from .current import TaskRunInfo
from .execution import TIMED_OUT, RunTimedOut, execute, task_traceback
from .interrupts import deadline
from .messages import Batch, Outcome, SharedArguments, Status, WorkItem
from .pickling import find_unpicklable, loads_function
from .portable_errors import portable_error
from .results import store as results_store
from .shapes import Args
from .shm import ResultRef, SegmentWriter, SharedMemoryError, unlink
from .shm_read import load_arguments, load_value
from .task_transactions import sent_back


class Worker:
    """This process's state across batches (its functions, its segment writer, its run count),
    and the state of the batch it runs (the results a fused follower may take)."""

    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Any]] = {}
        self.writer: SegmentWriter | None = None
        self.board: worker_process.Scoreboard | None = None
        self.runs_done = 0  # in this process's life, for max_tasks_per_worker
        self.initializer_failure: BaseException | None = None  # every run here fails with it
        self.batch_results: dict[int, Any] = {}  # completed runs of the batch being run
        # The values themselves of the runs fused followers of this batch take: the first
        # follower that takes one gets the object as made (no read back from the segment),
        # every later one the stored copy, so what the first writes into it stays its own.
        self.batch_values: dict[int, Any] = {}
        self.wanted: dict[int, int] = {}  # run -> the follower of this batch handed its value
        self.loading = 0  # the run whose arguments are being loaded

    def run_batch(self, batch: Batch) -> list[Outcome]:
        board = self._scoreboard(batch.board_dir)
        if self.writer is None or self.writer.owner != batch.owner:
            self.writer = SegmentWriter(batch.owner, record=board.made)
        prepared = self.writer.prepare(batch.expected)
        lent = list(batch.lent) + prepared
        outcomes = []
        for item in batch.items:
            for run_id in item.takes:
                self.wanted.setdefault(run_id, item.run_id)
        try:
            for item, arguments in zip(batch.items, batch.arguments, strict=True):
                if batch.max_runs and self.runs_done >= batch.max_runs:  # the parent renews the pool
                    outcomes.append(Outcome(item.run_id, Status.SPENT))
                    continue
                if item.after and not isinstance(self.batch_results.get(item.after), ResultRef):
                    outcomes.append(Outcome(item.run_id, Status.DEFERRED))  # fused behind a run that failed
                    self._taken(item)
                    continue
                board.running(item.run_id)
                outcome = self._run_item(batch, item, arguments, lent)
                self._taken(item)
                self.runs_done += 1
                if outcome.status is Status.COMPLETED:
                    self.batch_results[item.run_id] = outcome.value
                outcomes.append(outcome)
        finally:
            self.batch_results.clear()
            self.batch_values.clear()
            self.wanted.clear()
            board.idle()
            for segment in prepared:
                if segment in lent:  # not written into: only this worker knows its name
                    unlink(segment.name)
            board.batch_reported()
        return outcomes

    def _taken(self, item: WorkItem) -> None:
        """`item` ran (or never will): the objects it was handed are no longer kept."""
        for run_id in item.takes:
            if self.wanted.get(run_id) == item.run_id:
                del self.wanted[run_id]
                self.batch_values.pop(run_id, None)

    def batch_value(self, run_id: int) -> Any:
        """A fused run's argument: the result of an earlier run of the same batch; a large one
        as that run made it to its first taker (every other consumer reads its stored copy), a
        small one from its bytes."""
        if run_id in self.batch_values and self.wanted.get(run_id) == self.loading:
            return self.batch_values[run_id]
        ref = self.batch_results[run_id]
        return load_value(ref.data, ref.segment, ref.spans)

    def _run_item(self, batch: Batch, item: WorkItem, arguments: bytes | SharedArguments,
                  lent: list[Any]) -> Outcome:
        pid = os.getpid()
        logs: list[tuple[int, str]] = []
        emit = lambda level, text: logs.append((level, text))  # noqa: E731
        loaded = time.time()
        if self.initializer_failure is not None:
            return _failure(item, self.initializer_failure, loaded, pid, logs)
        try:
            fn = self._function(item.fn_key, batch.board_dir)
            code_loaded = time.time()  # a task's first run in a worker imports its module: not moving data
            self.loading = item.run_id
            args, kwargs = load_arguments(arguments)
        except BaseException as error:  # noqa: BLE001
            return _failure(item, RuntimeError(
                f"could not load the arguments of task run {item.who.run_name!r} in worker {pid}: "
                f"{type(error).__name__}: {error}"), loaded, pid, logs)
        began = time.time()
        code = code_loaded - loaded
        limit = item.timeout
        with contextlib.nullcontext() if limit is None else deadline(max(limit, 1e-3), RunTimedOut, TIMED_OUT):
            run = TaskRunInfo.of(item.who, fn, args, kwargs)
            status, value, failure, start, end = execute(run, item.log_prints, emit, own_interrupts=True)
            del run
        del args, kwargs
        if failure is not None:
            return _failure(item, failure, start, pid, logs, status, end, began - code_loaded, code)
        assert self.writer is not None
        if item.persist is not None:
            entry = results_store.write(item.persist, value, end - start, item.who.run_name,
                                        lambda text: logs.append((logging.WARNING, text)))
            if entry is not None:  # the entry serves its consumers too: mapped from the page cache
                return Outcome(item.run_id, Status.COMPLETED, entry, start=start, end=end, worker=pid,
                               logs=tuple(logs), transfer=(began - code_loaded) + (time.time() - end), loading=code,
                               transaction_values=sent_back(item.who.transaction))
        try:
            ref = self.writer.store(value, batch.threshold, lent)
        except BaseException as error:  # noqa: BLE001
            return _failure(item, _storing_failed(item.who.run_name, value, error), start, pid, logs,
                            end=end, transfer=began - code_loaded, loading=code)
        if item.run_id in self.wanted and ref.segment is not None:
            # A fused follower takes a large value as made, instead of reading the segment back.
            # A small one it unpickles from the stored bytes, as every consumer does: a result that
            # cannot be unpickled then fails its consumers alike, fused or not.
            self.batch_values[item.run_id] = value
        stored = time.time()
        return Outcome(item.run_id, Status.COMPLETED, ref, start=start, end=end, worker=pid,
                       logs=tuple(logs), transfer=(began - code_loaded) + (stored - end), loading=code,
                       transaction_values=sent_back(item.who.transaction))

    def _function(self, key: str, directory: str) -> Callable[..., Any]:
        """A task's function: pickled once by the parent into a file, loaded once per worker."""
        fn = self.functions.get(key)
        if fn is None:
            path = os.path.join(directory, f"fn-{key}")
            try:
                with open(path, "rb") as file:
                    fn = self.functions[key] = loads_function(file.read())
            except FileNotFoundError:
                raise FileNotFoundError(f"the task's pickled function {path!r} is gone (a tmp cleaner?); "
                                        "procflow writes it again at the next flow run") from None
        return fn

    def _scoreboard(self, directory: str) -> worker_process.Scoreboard:
        """Made again when the parent's directory moved (a tmp cleaner removed the old one)."""
        if self.board is None or self.board.directory != directory:
            if self.board is not None:
                self.board.close()
            self.board = worker_process.Scoreboard(directory)
        return self.board


WORKER = Worker()  # this process's (in the parent too, unused: the module is imported to pickle by name)


def run_batch(message: bytes) -> bytes:
    """The worker process's entry point: run every item of the batch in order.

    Batch and outcomes cross as bytes pickled here and in the parent with C pickle, so
    loky's cloudpickle-based pickler only sees this function and a bytes object.
    """
    return pickle.dumps(WORKER.run_batch(pickle.loads(message)), protocol=5)


def batch_value(run_id: int) -> Any:
    """The result of an earlier run of this batch (see `Worker.batch_value`): what a fused
    follower's argument unpickles to (`runners/arguments.py`)."""
    return WORKER.batch_value(run_id)


def start_worker(parent_pid: int, pickled_initializer: bytes | None, initargs: Args) -> None:
    """The pool's initializer (`worker_process.start`)."""
    WORKER.initializer_failure = worker_process.start(parent_pid, pickled_initializer, initargs)


def _storing_failed(run_name: str, value: Any, error: BaseException) -> BaseException:
    """What went wrong storing a result, by its real cause (issue 19: every error read as
    "cannot be pickled: result: pickles fine"): the system, the memory, or the value."""
    failure: BaseException
    if isinstance(error, SharedMemoryError):
        failure = OSError(f"the result of task run {run_name!r} could not be stored: {error}")
    elif isinstance(error, MemoryError):
        failure = MemoryError(f"the result of task run {run_name!r} could not be stored: out of memory")
    else:
        where = find_unpicklable(value, "result")
        if where.endswith("pickles fine"):  # it failed for another reason: that one
            where = f"{type(error).__name__}: {error}"
        failure = TypeError(f"the result of task run {run_name!r} cannot be pickled: {where}")
    failure.__cause__ = error
    return failure


def _failure(item: WorkItem, error: BaseException, start: float, pid: int, logs: list[Any],
             status: Status = Status.FAILED, end: float | None = None, transfer: float = 0.0,
             loading: float = 0.0) -> Outcome:
    text = task_traceback(error)
    return Outcome(item.run_id, status, None, portable_error(error, text), text, start,
                   end if end is not None else time.time(), pid, tuple(logs), transfer, loading)
