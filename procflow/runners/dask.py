"""`DaskTaskRunner`: the same flow on a Dask distributed cluster.

    engine --calls--> submit(): upstream futures in the arguments become Dask futures
                      (results stay on the workers; Dask moves data worker to worker)
           client.submit(run_on_dask, fn, ...) on the cluster
    worker: run_on_dask -> the value stays there; a small event (state, times, worker
            address, log lines, the error) goes to the topic this runner listens to
    client: the event -> one Outcome -> sink; a Dask future that errors without an
            event (a worker died: KilledWorker) -> Crashed

procflow's scheduler stays the single source of truth for states, `NotReady`,
`allow_failure`, retries, timeouts and the final state. `wait_for` is enforced by that
scheduler before a run is submitted; it is not added to the Dask graph, where it would
ship the upstream's data to the worker for nothing. A worker death fails every task
queued on that worker, so Dask's own policy stays in force: it reschedules them and
gives up on a task after `distributed.scheduler.allowed-failures` deaths (3 by
default) with `KilledWorker`, which procflow reports as `Crashed` and retries. Timeouts raise `TimeoutError` in
the task's thread on the worker (a loop inside C code cannot be interrupted there).
Arrays the flow passes are scattered to the cluster, once per `.map()` when its children
share one. Workers need procflow installed (`pip install 'procflow[dask]'`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import types
import uuid
from typing import Any, Iterator

import psutil
from distributed import Client, LocalCluster

from ..messages import Outcome, Status
from ..pickling import dumps_function
from ..states import LazyResult
from ..portable_errors import decode_error
from .base import Call, DirectUse, Sink
from ..skeleton import Input, Slot
from .dask_worker import Arguments, run_on_dask
from .crashes import kill_with_its_children
from ..shapes import Args, Kwargs


class ResultReleased(RuntimeError):
    """A run's result was read after its flow run let go of the Dask cluster holding it."""


class DaskResult(LazyResult):
    """A result kept on a Dask worker; `.load()` fetches it to the parent."""

    __slots__ = ("future", "released", "_value", "_loaded")

    def __init__(self, future: Any) -> None:
        self.future = future
        self.released = False
        self._loaded = False
        self._value = None

    def load(self) -> Any:
        if not self._loaded:
            if self.released or getattr(self.future.client, "status", "running") in ("closing", "closed"):
                raise ResultReleased(
                    f"the result of {self.future.key!r} stayed on the Dask cluster and was released: its future "
                    "was dropped, or its flow run ended; keep the future (or call .result()) while the flow runs")
            self._value = self.future.result()
            self._loaded = True
        return self._value

    @property
    def holds_storage(self) -> bool:
        return True


def _called_at_top_level_of_script(main_name: str) -> bool:
    """The flow is called from the top-level code of a script running as `main_name`
    (`__main__`; `__mp_main__` where a spawned process imports it again). Not in an
    interactive session, nor under `procflow run` (the script is not `__main__` there)."""
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None:
        names = frame.f_globals
        if frame.f_code.co_name == "<module>" and names.get("__name__") == main_name and names.get("__file__"):
            return True
        frame = frame.f_back
    return False


def _unguarded_script_message() -> str:
    name = os.path.basename(getattr(sys.modules.get("__main__"), "__file__", "") or "the script")
    return (f"procflow: {name} calls a flow with DaskTaskRunner at its top level: Dask's worker processes "
            "import the script again and cannot start; put that call under `if __name__ == \"__main__\":`")


@contextlib.contextmanager
def _quiet_dask_start() -> Iterator[None]:
    """Dask logs each worker that failed to start, with its traceback: the error we raise
    says why in one line."""
    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.nanny", "distributed.core")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class DaskTaskRunner(DirectUse):
    """Runs tasks on Dask: a new `LocalCluster` per flow run, or the cluster at `address`."""

    name = "dask"
    depth_first = True

    def __init__(self, address: str | None = None, cluster_kwargs: Kwargs | None = None,
                 client_kwargs: Kwargs | None = None) -> None:
        self.address = address
        self.cluster_kwargs = cluster_kwargs or {}
        self.client_kwargs = client_kwargs or {}

    def start(self, sink: Sink) -> DaskSession:
        """A flow run's own session: its client (and its cluster, when it makes one)."""
        return DaskSession(self, sink)


class DaskSession:
    """One flow run on Dask: its client, its runs' Dask futures, the events they report."""

    interrupt_grace = 0.0
    fuses = False

    def __init__(self, runner: DaskTaskRunner, sink: Sink) -> None:
        self.address, self.cluster_kwargs, self.client_kwargs = runner.address, runner.cluster_kwargs, \
            runner.client_kwargs
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._sink = sink
        self._stuck = self._cancelling = False
        self._running: dict[int, Any] = {}  # run id -> Dask future, until its outcome
        self._reported: set[int] = set()
        self._early: dict[int, dict[Any, Any]] = {}  # events that came before submit() recorded the future
        self._lock = threading.Lock()
        if self.address is None:
            if _called_at_top_level_of_script("__mp_main__"):
                # A Dask worker process importing an unguarded script (issue 19: 502 lines):
                # end here, silently; the script's own process says why in one line.
                os._exit(1)
            options = {"processes": True, "dashboard_address": ":0", "host": "127.0.0.1",
                       "threads_per_worker": 1, **self.cluster_kwargs}
            try:
                with _quiet_dask_start():
                    self._cluster = LocalCluster(**options)
            except Exception as error:
                if _called_at_top_level_of_script("__main__"):
                    raise SystemExit(_unguarded_script_message()) from None
                cause = f"{type(error).__name__}: {str(error).rstrip('.')}"
                raise RuntimeError(
                    f"DaskTaskRunner could not start a local Dask cluster ({cause}). "
                    "Its workers are new processes that import your script: when the script calls the flow "
                    "at its top level, put that call under `if __name__ == \"__main__\":`") from error
            self._client = Client(self._cluster, **self.client_kwargs)
        else:
            self._client = Client(self.address, **self.client_kwargs)
        self._topic = f"procflow-{uuid.uuid4().hex[:12]}"
        self._scattered: dict[tuple[int, int], tuple[Any, Any]] = {}  # (map, id) -> (value, Dask future)
        self._functions: dict[Any, bytes] = {}  # task function -> its pickle (`dumps_function`)
        self._client.subscribe_topic(self._topic, self._on_event)

    def capacity(self) -> int:
        return 1 << 20  # Dask queues and balances on its own scheduler

    def submit(self, calls: list[Call]) -> None:
        assert self._client is not None, "runner used before start()"
        for call in calls:
            # what fills the slots, one per input (Dask futures Dask resolves on the worker), then
            # the arrays scattered below
            upstream = [self._upstream(slot) for slot in call.inputs]
            args, kwargs = self._scatter_large(call, call.args, call.kwargs, upstream)
            with self._lock:
                self._reported.discard(call.run_id)  # a retry: this attempt reports anew
            function = self._functions.get(call.fn)
            if function is None:
                function = self._functions[call.fn] = dumps_function(call.fn)
            future = self._client.submit(
                run_on_dask, function, self._topic, call.who, call.log_prints, call.timeout, Arguments(args, kwargs),
                upstream, call.persist,
                key=f"{call.who.run_name}-{uuid.uuid4().hex[:8]}", pure=False)
            with self._lock:
                self._running[call.run_id] = future
                early = self._early.pop(call.run_id, None)
            if early is not None:  # the run finished before we recorded its future
                self._on_event((None, early))
            future.add_done_callback(lambda f, run_id=call.run_id: self._on_done(run_id, f))

    def _scatter_large(self, call: Call, args: Args, kwargs: Kwargs, upstream: list[Any]) -> tuple[Args, Kwargs]:
        """Arrays the flow passes go to the cluster with `scatter`, as Dask's docs advise, not
        inside each task's graph: once per run, or once per `.map()` for a value its
        children share (`unmapped(array)`). Those of a map stay until the flow run ends."""
        client = self._client
        assert client is not None
        group = call.map_group

        def place(value: Any) -> Any:
            if not _is_large(value):
                return value
            kept = self._scattered.get((group, id(value))) if group is not None else None
            if kept is None:
                kept = (value, client.scatter(value, hash=False))
                if group is not None:
                    self._scattered[(group, id(value))] = kept  # the value is held too: its id stays its own
            upstream.append(kept[1])
            return Slot(len(upstream) - 1)

        return tuple(place(value) for value in args), {name: place(value) for name, value in kwargs.items()}

    def _upstream(self, slot: Input) -> Any:
        """An upstream's result as an argument: its Dask future when it lives on the cluster
        through this runner's client. A run of an earlier flow run (its client closed, its
        result fetched when that run ended) passes its value."""
        state = slot.state
        data = state.data
        if state.is_completed() and isinstance(data, DaskResult) and data.future.client is self._client:
            return data.future
        return slot.value()

    def _on_event(self, event: tuple[Any, ...]) -> None:
        message = event[1]
        run_id = message["run_id"]
        with self._lock:
            if run_id in self._reported:
                return
            future = self._running.pop(run_id, None)
            if future is None:
                self._early[run_id] = message
                return
            self._reported.add(run_id)
        status = Status(message["status"])
        error = decode_error(message["error"], message["error_text"]) if message["error"] else None
        value = DaskResult(future) if status is Status.COMPLETED else None
        self._sink([Outcome(run_id, status, value, error, message["error_text"], message["start"], message["end"],
                            message["worker"], tuple(tuple(line) for line in message["logs"]),
                            transaction_values=message.get("transaction_values"))])

    def _on_done(self, run_id: int, future: Any) -> None:
        if future.status != "error" and future.status != "cancelled":
            return  # finished: its event reports it
        with self._lock:
            if run_id in self._reported or self._running.pop(run_id, None) is None:
                return
            self._reported.add(run_id)
        if future.status == "cancelled":
            if self._cancelling:
                self._sink([Outcome(run_id, Status.CANCELLED)])
            else:  # not by us: an input it needed was released or lost
                self._sink([Outcome(run_id, Status.CRASHED, end=time.time(), error_text=(
                    "Dask cancelled this task: an input it needed was released or lost on the cluster"))])
            return
        error = future.exception()
        if isinstance(error, ImportError):  # the task itself never ran: say what the worker lacks
            self._sink([Outcome(run_id, Status.FAILED, error=self._missing_module(future, error), end=time.time())])
            return
        text = f"Dask lost the worker running this task: {type(error).__name__}: {error}"
        self._sink([Outcome(run_id, Status.CRASHED, error_text=text, end=time.time())])

    def _missing_module(self, future: Any, error: ImportError) -> ImportError:
        """Issue 19: it read "Dask lost the worker"; name the module and the worker."""
        def erred_on(key: Any, dask_scheduler: Any = None) -> list[str]:  # runs on the scheduler (by value)
            task = dask_scheduler.tasks.get(key)
            return sorted(getattr(task, "erred_on", ()) or ()) if task is not None else []

        try:
            assert self._client is not None
            workers = self._client.run_on_scheduler(erred_on, future.key)
        except Exception:  # noqa: BLE001 - an older scheduler, or it went: the module still gets named
            workers = []
        where = f"Dask worker {', '.join(workers)}" if workers else "a Dask worker"
        module = error.name or str(error)
        missing = ImportError(f"{where} cannot import module {module!r}, which this task needs "
                              f"({type(error).__name__}: {error}): install it where the workers run, "
                              "or send it with client.upload_file()", name=error.name)
        missing.__cause__ = error
        return missing

    def interrupt(self, run_id: int, timeout: float) -> float | None:
        """The in-thread TimeoutError did not end it: report it timed out and let it go."""
        with self._lock:
            future = self._running.pop(run_id, None)
            self._reported.add(run_id)
        if future is not None:
            future.cancel()
            self._sink([Outcome(run_id, Status.TIMED_OUT, error=TimeoutError("timed out"), end=time.time())])
        return None

    def cancel_running(self) -> None:
        self._cancelling = True
        with self._lock:
            futures = list(self._running.values())
        if futures and self._client is not None:
            self._client.cancel(futures)
            self._stuck = self._cluster is not None  # a task blocked in C code ignores the cancel

    def release(self, result: LazyResult) -> None:
        if isinstance(result, DaskResult):
            result.released = True
            result.future.release()

    def shutdown(self) -> None:
        self._scattered.clear()
        stuck = self._own_worker_pids() if self._stuck else []
        if self._client is not None:
            self._client.unsubscribe_topic(self._topic)
            self._client.close()
            self._client = None
        for pid in stuck:  # else closing the cluster waits ~4 s for them (Ctrl-C must end within 5 s)
            kill_with_its_children(pid)
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _own_worker_pids(self) -> list[int]:
        """The worker processes of the cluster this runner started (our children, checked)."""
        assert self._client is not None
        try:
            pids = set(self._client.run(os.getpid).values())
        except Exception:  # noqa: BLE001 - a worker already gone: closing handles the rest
            return []
        return [child.pid for child in psutil.Process().children(recursive=True) if child.pid in pids]


SCATTER_ABOVE_BYTES = 1 << 20


def _is_large(value: Any) -> bool:
    """An array (anything with `nbytes`: numpy, Arrow, ...) of at least SCATTER_ABOVE_BYTES."""
    if type(value) in (int, float, str, bool, type(None), Slot):
        return False
    try:
        return int(getattr(value, "nbytes", 0)) >= SCATTER_ABOVE_BYTES
    except Exception:  # noqa: BLE001 - an object whose `nbytes` is not a byte count
        return False
