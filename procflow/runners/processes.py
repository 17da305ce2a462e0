"""`ProcessPoolTaskRunner`: ready runs go to reusable worker processes, in batches.

    engine --calls--> submit(): pickle each run's arguments (futures become result
                      references), group runs into batches, lend pooled segments,
                      choose each batch's worker (`slots.py`: a loky executor per worker)
           worker: worker.run_batch(batch) -> [Outcome]
    loky thread --> _on_done(): decode errors, give unused segments back, or charge
                    a crash to the one run that was in the dead worker -> sink

Batches (`batching.py`): tiny runs travel several to a message, slow or unknown runs one
per message. A worker holds a second message (`MESSAGES_PER_WORKER`) only behind work of
known length about to end (`QUEUE_BEHIND_SECONDS`), so the engine's depth-first order still
decides what runs next and no run waits behind a long one while another worker is free.
Functions are pickled once per process and loaded once per worker.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import pickle
import threading
import time
import weakref
from typing import Any, Callable

import psutil
from loky import ProcessPoolExecutor

from .. import options, settings
from .. import ownership
from ..messages import Batch, Outcome, SharedArguments, Status, WorkItem
from ..pickling import OutOfBand, dumps_function
from ..runlog import FLOW_LOGGER
from ..shm import WARM_BYTES, ResultRef, SegmentWriter
from ..states import LazyResult
from ..portable_errors import decode_error
from ..worker import run_batch, start_worker
from .arguments import pickle_call
from .base import Call, DirectUse, Sink, worker_count
from .batching import TARGET_BATCH_SECONDS, RunTimes, batch_size, group_calls
from .crashes import CrashLedger, WorkerWatch, alive
from .directory import FunctionFiles, WorkerBoards
from .guardian import GUARDIAN
from .segments import SEGMENT_POOL, ArgumentSegments, SegmentLedger
from .slots import WorkerSlots
from ..shapes import Args

THREAD_LIMIT_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# loky replaces a worker whose RSS grew 300 MB past its size after its first call, taking
# that for a leak. The segments a worker keeps mapped count in its RSS: allow for them too.
LOKY_LEAK_VAR = "LOKY_MAX_MEMORY_LEAK_SIZE"
LOKY_LEAK_BYTES = 300 * 10**6 + WARM_BYTES

# For the life of this process, as the pool: each task function's pickle in the private directory.
_FUNCTION_FILES = FunctionFiles()


_pool: tuple[tuple[Any, ...], WorkerSlots] | None = None
_pool_lock = threading.Lock()


def shared_pool(max_workers: int, env: dict[str, str], initializer: Callable[..., Any] | None, initargs: Args,
                idle_timeout: float) -> WorkerSlots:
    """procflow's reusable workers: one pool per process, kept across flow runs, made again
    when its settings change (a slot whose worker died is made again by itself). Our own,
    not loky's global reusable executor, so that a user's joblib or loky code and procflow
    do not shut each other's workers down."""
    global _pool
    key = (max_workers, tuple(sorted(env.items())), initializer, initargs)
    with _pool_lock:
        if _pool is not None and _pool[0] == key:
            return _pool[1]
        if _pool is not None:
            _pool[1].shutdown(wait=False)
        pickled = initializer and dumps_function(initializer)

        def make() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(max_workers=1, timeout=idle_timeout, env=env, initializer=start_worker,
                                       initargs=(os.getpid(), pickled, initargs))

        _pool = (key, WorkerSlots(max_workers, make))
        return _pool[1]


KEPT_SEGMENTS_SECONDS = 5.0  # SPEC §3: a warm pool is released after it idles, in seconds


def _kept_seconds(owner: str, value: Any) -> float | None:
    """`keep_segments_between_runs`: False (None: not kept), True (5 s), or seconds above 0."""
    if isinstance(value, bool):
        return KEPT_SEGMENTS_SECONDS if value else None
    if isinstance(value, (int, float)) and 0 < value < float("inf"):
        return float(value)
    raise TypeError(f"{owner}: keep_segments_between_runs must be True, False or a number of seconds above 0 "
                    f"(how long freed segments are kept once no flow run uses them), got {value!r}")


def default_workers() -> int:
    """`PROCFLOW_MAX_WORKERS`, else Prefect's `PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS`,
    else the number of physical cores."""
    override = os.environ.get("PROCFLOW_MAX_WORKERS")
    if override:
        if not override.strip().isdigit():
            raise ValueError(f"PROCFLOW_MAX_WORKERS must be a whole number, got {override!r}")
        return max(1, int(override))
    prefects = settings.PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS.value()
    if prefects is not None:
        return worker_count(prefects, 1)
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class ProcessPoolTaskRunner(DirectUse):
    """Runs tasks in a reusable pool of worker processes (the default runner).

    `keep_segments_between_runs=True` keeps the bounded pool of freed shared-memory
    segments when a flow run ends, for the next flow run in this process: a flow called
    again and again with large results then writes them at memory speed instead of into
    fresh pages. Kept segments hold no values; they are unlinked once no flow run has used
    them for 5 seconds (a number instead of True: that many seconds), at exit, by
    `release_segments()`, or when a flow run on a runner that does not keep them ends.
    """

    name = "process"
    depth_first = True

    def __init__(self, max_workers: int | None = None, shm_threshold_bytes: int = 1 << 20,
                 max_tasks_per_worker: int | None = None, worker_env: dict[str, str] | None = None,
                 initializer: Callable[..., Any] | None = None, initargs: Args = (),
                 keep_segments_between_runs: bool | float = False) -> None:
        owner = "ProcessPoolTaskRunner"
        self.max_workers = worker_count(max_workers, default_workers())
        limit = max(64, 16 * (os.cpu_count() or 1))
        if self.max_workers > limit:  # issue 19: 10**6 would try to start a million processes
            raise ValueError(f"{owner}: max_workers={self.max_workers} is more than {limit} (16 per core, "
                             f"{os.cpu_count()} cores here): each worker is a process; use fewer")
        self.shm_threshold_bytes = options.whole(owner, "shm_threshold_bytes", shm_threshold_bytes)
        self.max_tasks_per_worker = options.whole(owner, "max_tasks_per_worker", max_tasks_per_worker,
                                                  minimum=1) or None
        self.worker_env = options.environment(owner, "worker_env", worker_env)
        self.initializer = options.function(owner, "initializer", initializer)
        if not isinstance(initargs, tuple):
            raise TypeError(f"{owner}: initargs must be a tuple, got {type(initargs).__name__}")
        self.initargs = initargs
        self.keep_segments_between_runs = keep_segments_between_runs
        self.kept_segments_seconds = _kept_seconds(owner, keep_segments_between_runs)

    def start(self, sink: Sink) -> ProcessSession:
        """A flow run's own session on the shared pool (one runner instance may serve several
        flow runs at once, in threads; each has its session)."""
        return ProcessSession(self, sink)

    @staticmethod
    def release_segments() -> None:
        """Unlink the freed segments kept for reuse (`keep_segments_between_runs`)."""
        SEGMENT_POOL.clear()


class ProcessSession:
    """One flow run on the shared pool: its batches in flight, its segments, its crash ledger.

    Made by `ProcessPoolTaskRunner.start()`; the engine talks to it only (`runners/base.py`).
    """

    interrupt_grace = 1.0
    fuses = True
    MESSAGES_PER_WORKER = 2
    # A second message waits in a worker only behind work ending this soon: a full message's worth,
    # so that a worker busy with short runs always has the next message at hand.
    QUEUE_BEHIND_SECONDS = TARGET_BATCH_SECONDS
    IDLE_WORKER_SECONDS = 300

    def __init__(self, runner: ProcessPoolTaskRunner, sink: Sink) -> None:
        self.max_workers = runner.max_workers
        self.shm_threshold_bytes = runner.shm_threshold_bytes
        self.max_tasks_per_worker = runner.max_tasks_per_worker
        self.worker_env, self.initializer, self.initargs = runner.worker_env, runner.initializer, runner.initargs
        self.kept_segments_seconds = runner.kept_segments_seconds
        ownership.sweep()  # what dead owners left: every start, as SPEC §3 says (one listdir)
        me = ownership.owner()
        self._sink = sink
        self._lock = threading.Lock()
        self._owner = me.token
        self._boards = WorkerBoards(me)
        self._dir = self._boards.dir  # checked (made again if a tmp cleaner took it) once per flow run
        GUARDIAN.watch(self._dir)
        _FUNCTION_FILES.verify(self._dir)
        self._watch = WorkerWatch(self._boards)
        self._batches: dict[int, tuple[tuple[WorkItem, ...], tuple[Any, ...], Any, int]] = {}
        self._batch_ids = itertools.count()
        self._run_times = RunTimes()
        self._segments = SegmentLedger(self.kept_segments_seconds)
        self._arguments = ArgumentSegments(SegmentWriter(self._owner))
        self._crashes = CrashLedger(self._boards, self._watch)
        self._fallback_warned = False
        self._slots = shared_pool(self.max_workers, self._worker_env(), self.initializer, self.initargs,
                                  self.IDLE_WORKER_SECONDS)
        self._noted: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()  # whose semaphores were noted

    def _worker_env(self) -> dict[str, str]:
        """BLAS thread limits and loky's leak allowance, then whatever `worker_env` says."""
        threads = str(max(1, (os.cpu_count() or 1) // self.max_workers))
        env = {name: threads for name in THREAD_LIMIT_VARS}
        if LOKY_LEAK_VAR not in os.environ:  # the user's own setting reaches the workers as it is
            env[LOKY_LEAK_VAR] = str(LOKY_LEAK_BYTES)
        env.update(self.worker_env or {})
        return env

    def warm_up(self) -> None:
        """Start the workers now (the pool otherwise starts them on its first job)."""
        self._slots.warm_up()

    def shutdown(self) -> None:
        """End of a flow run: worker processes stay warm for the next one; segments go."""
        self._watch.stop()
        self._arguments.close()
        self._segments.close()
        self._boards.remove_orphans_of_dead(alive)
        ownership.owner().note_semaphores()  # the workers' own, made when they started

    # -- dispatch -----------------------------------------------------------------

    def busy_workers(self) -> int:
        """Workers inside a run now, by their scoreboards (for the live view)."""
        try:
            return sum(1 for run_id, _ in self._boards.read().values() if run_id)
        except OSError:
            return 0

    def capacity(self) -> int:
        """How many runs `submit` takes now: a query, it changes nothing. As many batches as
        the workers take without a batch waiting behind a long run (`WorkerSlots.room`); while
        this flow run has batches out, a batch of ours comes back first and wakes the engine,
        so it may be none; with none out, at least one (other flow runs' batches never wake us)."""
        size, seconds = self._batch()
        return self._messages(seconds) * size

    def _batch(self) -> tuple[int, float | None]:
        """Runs per message, and the seconds a message is expected to take (None: not known)."""
        seconds = self._run_times.seconds
        size = batch_size(seconds, self.max_tasks_per_worker)
        return size, None if seconds is None else seconds * size

    def _messages(self, batch_seconds: float | None) -> int:
        with self._lock:
            free = self.max_workers * self.MESSAGES_PER_WORKER - len(self._batches)
            idle = not self._batches
        room = self._slots.room(self.MESSAGES_PER_WORKER, self.QUEUE_BEHIND_SECONDS, batch_seconds)
        return max(1 if idle else 0, min(free, room))

    def submit(self, calls: list[Call]) -> None:
        for group in group_calls(calls, max(1, self._messages(self._batch()[1]))):
            self._send(group)

    def _send(self, group: list[Call]) -> None:
        items, arguments, failures = [], [], []
        ahead: set[int] = set()  # runs earlier in this message
        for call in group:
            if call.after and call.after not in ahead:  # the run it was fused behind failed to go
                failures.append(Outcome(call.run_id, Status.DEFERRED))
                continue
            try:
                arguments.append(self._pickle_arguments(call, frozenset(ahead) if call.after else frozenset()))
                key = self._function_key(call)
            except Exception as error:  # noqa: BLE001 - that run fails, the others go
                # Its message names the run, the part and pickle's reason; where in procflow
                # it was found would only bury that (issue 19).
                failures.append(Outcome(call.run_id, Status.FAILED, error=error.with_traceback(None)))
                continue
            takes = tuple(slot.run_id for slot in call.inputs if slot.run_id in ahead) if call.after else ()
            ahead.add(call.run_id)
            items.append(WorkItem(call.who, key, call.timeout, call.log_prints, call.after, call.persist, takes))
        if failures:
            self._arguments.finished(outcome.run_id for outcome in failures)
            self._sink(failures)
        if not items:
            return
        lent, expected = self._segments.lend(items)
        batch = Batch(self._owner, self._dir, self.shm_threshold_bytes, tuple(items), tuple(arguments), lent,
                      expected, self.max_tasks_per_worker or 0)
        batch_id = next(self._batch_ids)
        message = pickle.dumps(batch, protocol=5)
        slot = self._slots.choose()
        seconds = self._run_times.seconds
        future, executor = self._slots.submit(slot, run_batch, message,
                                              expected=None if seconds is None else seconds * len(items))
        if executor not in self._noted:  # its worker (and its loky locks) exist now
            self._noted.add(executor)
            ownership.owner().note_semaphores()
        with self._lock:
            self._batches[batch_id] = (batch.items, lent, executor, slot)
        future.add_done_callback(functools.partial(self._on_done, batch_id))

    def _pickle_arguments(self, call: Call, in_batch: frozenset[int]) -> bytes | SharedArguments:
        """The run's arguments for a worker; large buffers the flow passes go to shared memory."""
        out_of_band = OutOfBand(self.shm_threshold_bytes)
        data = pickle_call(call, in_batch, out_of_band)
        if not out_of_band.buffers:
            return data
        shared = self._arguments.share(call.run_id, call.map_group, out_of_band.buffers)
        if shared is not None:
            return SharedArguments(data, shared)
        self._warn_no_room(f"the arguments of task run '{call.who.run_name}'")
        return pickle_call(call, in_batch, None)

    def _function_key(self, call: Call) -> str:
        return _FUNCTION_FILES.key(call.fn, call.who.task_name, self._dir)

    # -- completion (loky's thread) ------------------------------------------------

    def _on_done(self, batch_id: int, future: Any) -> None:  # a loky future
        with self._lock:
            items, lent, executor, slot = self._batches.pop(batch_id)
        self._slots.done(slot)
        error = future.exception()
        if error is None:
            received = pickle.loads(future.result())
            outcomes = [self._received(outcome, item) for outcome, item in zip(received, items, strict=True)]
            if any(outcome.status is Status.SPENT for outcome in outcomes):
                self._slots.spent(slot)  # its worker counted its runs: renewed once idle
        else:
            outcomes = self._crashes.outcomes(items, error, executor)
        self._arguments.finished(item.run_id for item in items)
        self._segments.return_unused(lent, outcomes)
        self._sink(outcomes)

    def _received(self, outcome: Outcome, item: WorkItem) -> Outcome:
        if outcome.status is Status.SPENT or outcome.status is Status.DEFERRED:  # not run
            return outcome
        self._run_times.add(outcome.end - outcome.start + outcome.transfer)
        ref = outcome.value
        self._segments.received(ref, item.fn_key)
        if isinstance(ref, ResultRef) and ref.fell_back:
            self._warn_no_room(f"the result of task run '{item.who.run_name}'")
        if outcome.error is None:
            return outcome
        return outcome._replace(error=decode_error(outcome.error, outcome.error_text))

    def _warn_no_room(self, what: str) -> None:
        if not self._fallback_warned:
            self._fallback_warned = True
            FLOW_LOGGER.warning(
                f"/dev/shm has no room for {what}: large results and arguments go through the pipe "
                "instead, slower. Free /dev/shm or give the container more (--shm-size).")

    # -- interrupts, cancellation, results -------------------------------------------

    def interrupt(self, run_id: int, timeout: float) -> float | None:
        """The run's own SIGALRM did not stop it: kill its worker (loky replaces it) and what it started."""
        return self._crashes.kill_overdue(run_id, timeout, self.interrupt_grace)

    def cancel_running(self) -> None:
        self._slots.shutdown(wait=False, kill_workers=True)

    def release(self, result: LazyResult) -> None:
        self._segments.release(result)


def cleanup_at_exit() -> None:
    """The pool's workers, then everything this process owns: segments, directory, locks.

    Only once every worker that ran something is gone: one killed at Ctrl-C may still be
    inside the call that creates a segment when loky's shutdown returns."""
    try:
        if _pool is not None:
            _pool[1].shutdown(wait=True)
        if ownership.current_token() is not None:
            _wait_until_gone(list(WorkerBoards(ownership.owner()).read()), timeout=2.0)
    finally:
        SEGMENT_POOL.clear()
        if ownership.current_token() is not None:
            ownership.owner().release()
        GUARDIAN.stop()


def _wait_until_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


atexit.register(cleanup_at_exit)
