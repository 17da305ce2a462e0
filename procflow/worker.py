"""Executing runs inside a worker process: `run_batch()` (one call's execution: `execution.py`).

`run_batch` is the process runner's entry point, a short free function: load each
function once per worker, unpickle each run's arguments (which maps the shared-memory
results they refer to), run with a SIGALRM deadline when the task has a timeout,
store the result (large buffers into shared memory) and report one `Outcome` per run.
Before each run the worker writes the run's id into its scoreboard file, so that the
parent can charge a crash of this process to exactly that run.
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import pickle
import signal
import struct
import threading
import time
from typing import Any, Callable

import cloudpickle

from .current import TaskRunInfo
from .execution import TIMED_OUT, RunTimedOut, execute, task_traceback
from .messages import Batch, Outcome, SharedArguments, Status, WorkItem
from .pickling import find_unpicklable, loads_function
from .results import store as results_store
from .shm import ResultRef, SegmentWriter, SharedMemoryError, WarmMappings, keep_mappings_warm, unlink
from .shm_read import load_arguments, load_value
from .exceptions import RemoteError, RemoteTraceback
from .shapes import Args


BOARD_FORMAT = "qd"  # the run id executing (0: none), when it started
BOARD_SIZE = struct.calcsize(BOARD_FORMAT)
MADE_PREFIX = "made-"  # the segments this worker created in its current batch (`directory.py`)

_functions: dict[str, Callable[..., Any]] = {}
_batch_results: dict[int, Any] = {}  # completed runs of the batch being run
# The values themselves of the runs a fused follower of this batch waits for: it takes the
# object at once (no read back from the segment), and it is dropped when that follower ran.
_batch_values: dict[int, Any] = {}
_wanted: set[int] = set()
_writer: SegmentWriter | None = None
_runs_done = 0  # in this worker process's life, for max_tasks_per_worker
_initializer_failure: BaseException | None = None  # every run here fails with it
_board: tuple[str, mmap.mmap, int] | None = None  # (directory, scoreboard, fd of the list of segments made)
_deadline_armed = False


def run_batch(message: bytes) -> bytes:
    """The worker process's entry point: run every item of the batch in order.

    Batch and outcomes cross as bytes pickled here and in the parent with C pickle, so
    loky's cloudpickle-based pickler only sees this function and a bytes object.
    """
    return pickle.dumps(_run_batch(pickle.loads(message)), protocol=5)


def _run_batch(batch: Batch) -> list[Outcome]:
    global _writer, _runs_done
    board, made = _scoreboard(batch.board_dir)
    if _writer is None or _writer.owner != batch.owner:
        _writer = SegmentWriter(batch.owner, record=functools.partial(_record_made, made))
    prepared = _writer.prepare(batch.expected)
    lent = list(batch.lent) + prepared
    outcomes = []
    _wanted.update(item.after for item in batch.items if item.after)
    try:
        for item, arguments in zip(batch.items, batch.arguments, strict=True):
            if batch.max_runs and _runs_done >= batch.max_runs:  # the parent renews the pool, runs it elsewhere
                outcomes.append(Outcome(item.run_id, Status.SPENT))
                continue
            if item.after:  # fused: only behind a run of this batch that completed (in band or not)
                before = _batch_results.get(item.after)
                if not isinstance(before, ResultRef):
                    outcomes.append(Outcome(item.run_id, Status.DEFERRED))
                    continue
            struct.pack_into(BOARD_FORMAT, board, 0, item.run_id, time.time())
            outcome = _run_item(batch, item, arguments, lent)
            _batch_values.pop(item.after, None)  # its follower ran: the value is its (or gone)
            _runs_done += 1
            if outcome.status is Status.COMPLETED:
                _batch_results[item.run_id] = outcome.value
            outcomes.append(outcome)
    finally:
        _batch_results.clear()
        _batch_values.clear()
        _wanted.clear()
        struct.pack_into(BOARD_FORMAT, board, 0, 0, 0.0)
        for segment in prepared:
            if segment in lent:  # not written into: only this worker knows its name
                unlink(segment.name)
        os.ftruncate(made, 0)  # the outcomes name them now
    return outcomes


def _record_made(fd: int, name: str) -> None:
    os.write(fd, f"{name}\n".encode())


def batch_value(run_id: int) -> Any:
    """A fused run's argument: the result of an earlier run of the same batch; a large one as
    that run made it (every other consumer reads its stored copy), a small one from its bytes."""
    if run_id in _batch_values:
        return _batch_values[run_id]
    ref = _batch_results[run_id]
    return load_value(ref.data, ref.segment, ref.spans)


def _run_item(batch: Batch, item: WorkItem, arguments: bytes | SharedArguments, lent: list[Any]) -> Outcome:
    pid = os.getpid()
    logs: list[tuple[int, str]] = []
    emit = lambda level, text: logs.append((level, text))  # noqa: E731
    loaded = time.time()
    if _initializer_failure is not None:
        return _failure(item, _initializer_failure, loaded, pid, logs)
    try:
        fn = _function(item.fn_key, batch.board_dir)
        args, kwargs = load_arguments(arguments)
    except BaseException as error:  # noqa: BLE001
        return _failure(item, RuntimeError(
            f"could not load the arguments of task run {item.run_name!r} in worker {pid}: "
            f"{type(error).__name__}: {error}"), loaded, pid, logs)
    began = time.time()
    if item.timeout is not None:
        _arm_deadline(item.timeout)
    try:
        run = TaskRunInfo(item.run_id, item.run_name, item.task_name, item.flow_run_name, fn, args, kwargs,
                          item.attempt, item.flow_attempt, item.tags)
        status, value, failure, start, end = execute(run, item.log_prints, emit, own_interrupts=True)
        del run
    finally:
        if item.timeout is not None:
            _disarm_deadline()
    del args, kwargs
    if failure is not None:
        return _failure(item, failure, start, pid, logs, status, end, began - loaded)
    assert _writer is not None
    if item.persist is not None:
        entry = results_store.write(item.persist, value, end - start, item.run_name,
                                    lambda text: logs.append((logging.WARNING, text)))
        if entry is not None:  # the entry serves its consumers too: mapped from the page cache
            return Outcome(item.run_id, Status.COMPLETED, entry, start=start, end=end, worker=pid, logs=tuple(logs),
                           transfer=(began - loaded) + (time.time() - end))
    try:
        ref = _writer.store(value, batch.threshold, lent)
    except BaseException as error:  # noqa: BLE001
        return _failure(item, _storing_failed(item.run_name, value, error), start, pid, logs,
                        end=end, transfer=began - loaded)
    if item.run_id in _wanted and ref.segment is not None:
        # A fused follower takes a large value as made, instead of reading the segment back.
        # A small one it unpickles from the stored bytes, as every consumer does: a result that
        # cannot be unpickled then fails its consumers alike, fused or not.
        _batch_values[item.run_id] = value
    stored = time.time()
    return Outcome(item.run_id, Status.COMPLETED, ref, start=start, end=end, worker=pid,
                   logs=tuple(logs), transfer=(began - loaded) + (stored - end))


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
             status: Status = Status.FAILED, end: float | None = None, transfer: float = 0.0) -> Outcome:
    text = task_traceback(error)
    return Outcome(item.run_id, status, None, portable_error(error, text), text, start,
                   end if end is not None else time.time(), pid, tuple(logs), transfer)


def portable_error(error: BaseException, text: str) -> bytes:
    """The exception pickled, or a RemoteError keeping its type, message and traceback."""
    try:
        blob: bytes = cloudpickle.dumps(error)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt (custom __init__)
        return blob
    except Exception:  # noqa: BLE001
        remote: bytes = cloudpickle.dumps(RemoteError(type(error).__qualname__, str(error), text))
        return remote


def decode_error(blob: Any, traceback_text: str) -> BaseException:
    """The parent's side of `portable_error`: the exception, with the worker's traceback text
    as its `__cause__` (a `RemoteTraceback`), which is what logs and users see of it."""
    if isinstance(blob, BaseException):
        return blob
    error: BaseException
    try:
        error = pickle.loads(blob)
    except Exception:  # noqa: BLE001
        first = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else "Exception: unknown"
        type_name, _, message = first.partition(": ")
        error = RemoteError(type_name, message, traceback_text)
    if traceback_text and error.__cause__ is None:
        error.__cause__ = RemoteTraceback(traceback_text)
    return error


def _function(key: str, directory: str) -> Callable[..., Any]:
    """A task's function: pickled once by the parent into a file, loaded once per worker."""
    fn = _functions.get(key)
    if fn is None:
        path = os.path.join(directory, f"fn-{key}")
        try:
            with open(path, "rb") as file:
                fn = _functions[key] = loads_function(file.read())
        except FileNotFoundError:
            raise FileNotFoundError(f"the task's pickled function {path!r} is gone (a tmp cleaner?); "
                                    "procflow writes it again at the next flow run") from None
    return fn


def _scoreboard(board_dir: str) -> tuple[mmap.mmap, int]:
    """This worker's file holding the run it is executing, and the fd of its list of segments
    made; the parent reads both after a crash. Made again when the parent's directory moved
    (a tmp cleaner removed the old one). The directory is the parent's own, 0700."""
    global _board
    if _board is None or _board[0] != board_dir:
        if _board is not None:
            os.close(_board[2])
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(os.path.join(board_dir, str(os.getpid())), flags, 0o600)
        try:
            os.write(fd, b"\0" * BOARD_SIZE)
            board = mmap.mmap(fd, BOARD_SIZE)
        finally:
            os.close(fd)
        made = os.open(os.path.join(board_dir, f"{MADE_PREFIX}{os.getpid()}"), flags | os.O_APPEND, 0o600)
        _board = (board_dir, board, made)
    return _board[1], _board[2]


def _on_deadline(signum: int, frame: Any) -> None:
    if _deadline_armed:
        raise RunTimedOut(TIMED_OUT)


def _arm_deadline(seconds: float) -> None:
    global _deadline_armed
    signal.signal(signal.SIGALRM, _on_deadline)
    _deadline_armed = True
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))


def _disarm_deadline() -> None:
    global _deadline_armed
    signal.setitimer(signal.ITIMER_REAL, 0)
    _deadline_armed = False


def start_worker(parent_pid: int, pickled_initializer: bytes | None, initargs: Args) -> None:
    """Worker initializer: exit when the parent dies, then run the user's initializer
    (pickled by `dumps_function`, so its traceback keeps its file's lines)."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides (it cancels
    # and stops the workers), so a worker must not end its run as a failure on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Our own process group: what a task starts is in it, so a crash or the guardian
    # (`runners.guardian`) ends them with one killpg.
    try:
        os.setpgid(0, 0)
    except OSError:  # pragma: no cover - a session leader already
        pass
    mappings = keep_mappings_warm()
    threading.Thread(target=_housekeeping, args=(parent_pid, mappings), daemon=True,
                     name="procflow-housekeeping").start()
    if pickled_initializer is not None:
        global _initializer_failure
        name = "initializer"
        try:
            initializer = loads_function(pickled_initializer)
            name = getattr(initializer, "__qualname__", name)
            initializer(*initargs)
        except BaseException as error:  # noqa: BLE001 - a worker that died here, loky would start again, forever
            _initializer_failure = RuntimeError(
                f"the worker initializer {name!r} failed in worker {os.getpid()}: {type(error).__name__}: {error}")
            _initializer_failure.__cause__ = error


def _exit_with_children() -> None:
    """The parent is gone: end the processes a running task started too, then this one."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    os._exit(0)


def _housekeeping(parent_pid: int, mappings: WarmMappings | None) -> None:
    """Twice a second: exit if the parent died; unmap segments the parent unlinked.

    A parent killed with SIGKILL cannot stop its workers, so they notice by themselves
    (PR_SET_PDEATHSIG would fire when the *thread* that spawned us exits, too early). The
    memory of an unlinked segment is freed only with its last mapping, so an idle worker
    must not keep one.
    """
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            _exit_with_children()
        if mappings is not None and len(mappings):
            mappings.sweep()
