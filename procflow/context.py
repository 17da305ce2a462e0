"""The current flow run (a context variable) and how runs are created in it.

A `FlowContext` ties a `FlowRun` record to the engine that executes its tasks. The
outermost flow opens an engine on its runner; nested flows share it. Tasks submitted
outside any flow go to a *detached* context on a default process runner, like
Prefect 3 (it lives until the interpreter exits).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .console import ConsoleObserver, configure_logging, default_observer
from .current import FlowRunContext, TaskRunContext, current_flow, current_task_run, own_runs
from .engine import Engine
from .entries import Entry, Tracker
from .events import Observer, Observers, RunRecords
from .task_future import TaskFuture
from .records import NO_TAGS, EdgeKind, FlowRun, TaskRun
from .runners.base import DirectUse, Runner
from .runners.processes import ProcessPoolTaskRunner
from .runners.threads import ThreadPoolTaskRunner
from .exceptions import MissingContextError

_tags: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("procflow_tags", default=frozenset())


def current_tags() -> frozenset[str]:
    """The tags of the `with tags(...)` blocks around this point."""
    return _tags.get()


@contextlib.contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Prefect's `with tags("nightly"):` the task runs created inside carry these tags too
    (`TaskRun.tags`); procflow gives tags no other effect. Nested blocks add up."""
    current = _tags.get() | frozenset(names)
    token = _tags.set(current)
    try:
        yield current
    finally:
        _tags.reset(token)


@dataclass
class TagsContext:
    """Prefect's `TagsContext.get().current_tags`: the tags `with tags(...)` adds here; inside a
    task run (in a worker too), the run's tags (its task's and those where it was made)."""

    current_tags: set[str] = field(default_factory=set)

    @classmethod
    def get(cls) -> TagsContext:
        run = current_task_run.get()
        if run is not None and run.run_id is not None:
            return cls(set(run.tags) | _tags.get())
        return cls(set(_tags.get()))


@dataclass(eq=False)
class FlowContext:
    flow_run: FlowRun
    engine: Engine
    tracker: Tracker
    observer: Observer
    owns_engine: bool
    name_counts: dict[str, itertools.count[Any]] = field(default_factory=dict)
    map_groups: itertools.count[Any] = field(default_factory=itertools.count)
    is_async: bool = False  # an `async def` flow: `state.result()` is awaitable in its code (asyncdispatch.py)
    flow: Any = None  # the Flow whose run this is (None for the detached context)
    refused: BaseException | None = None  # its parameters failed validation: it ends Failed without running
    standalone: bool = False  # task runs called outside any flow (`standalone_context`): records not kept

    def next_run_name(self, task_name: str) -> str:
        counter = self.name_counts.get(task_name)
        if counter is None:
            counter = self.name_counts[task_name] = itertools.count()
        return f"{task_name}-{next(counter)}"

    def new_record(self, task: Any, name: str, upstream: Sequence[tuple[int, EdgeKind]],
                   map_group: int | None) -> TaskRun:
        extra, chosen = _tags.get(), task.options  # (its fields: no descriptor per read)
        tags = chosen.tags
        run = TaskRun(self.engine.next_run_id(), name, chosen.name, self.flow_run.name, upstream=upstream,
                      created_time=time.time(), map_group=map_group,
                      tags=frozenset(tags | extra if extra else tags) if tags or extra else NO_TAGS,
                      flow_run_id=self.flow_run.id)
        return run  # kept in the flow run's record by its observers (`events.RunRecords`), once announced

    def submit(self, entries: list[Entry], mapped: bool) -> list[TaskFuture[Any]]:
        """Hand runs to the engine; returns their futures."""
        futures = []
        waiter = self.engine.waiter
        for entry in entries:
            future: TaskFuture[Any] = TaskFuture(entry.run, waiter)
            entry.future = weakref.ref(future)
            futures.append(future)
        self.observer.runs_created(self.flow_run, [entry.run for entry in entries], mapped)
        if entries:
            self.engine.add(entries)
        return futures


def open_context(flow_run: FlowRun, runner: Runner | None, log_prints: bool,
                 parent: FlowContext | None) -> FlowContext:
    """A context for a new flow run: a fresh engine on `runner`, or the parent's."""
    if parent is not None:
        engine, observer, owns = parent.engine, parent.observer, False
    else:
        assert runner is not None, "an outermost flow run needs a runner"
        observer = Observers(RunRecords(), default_observer())
        engine, owns = Engine(runner, observer), True
        engine.start()
    flow_run.workers = getattr(engine.runner, "max_workers", None)  # for utilisation in the summary
    flow_run.busy_workers = getattr(engine.runner, "busy_workers", None)  # for the live view
    return FlowContext(flow_run, engine, engine.new_tracker(flow_run, log_prints), observer, owns)


_detached: FlowContext | None = None
_detached_lock = threading.Lock()


def context_or_detached() -> FlowContext:
    """The current flow's context; outside a flow, the detached one (made on first use); in a
    task run outside a flow (a worker's, or a task called outside any flow), the nested one."""
    global _detached
    context: FlowContext | None = current_flow.get()
    if context is not None:
        return context
    if current_task_run.get() is not None:
        return _nested_context()
    with _detached_lock:
        if _detached is None:
            flow_run = FlowRun(name="detached-runs", flow_name="<no flow>", start_time=time.time())
            runner = ProcessPoolTaskRunner()
            _detached = open_context(flow_run, runner, False, None)
            # Finish pending detached runs before the pool stops taking work: loky shuts down
            # in threading's exit hooks (before atexit's), registered when its pool first
            # runs a job, and those hooks run last-registered first.
            _detached.engine.runner.warm_up()  # type: ignore[attr-defined] # the session's process pool
            threading._register_atexit(_close_detached)  # type: ignore[attr-defined]
        return _detached


class _OwnRuns:
    """The runs a task run submitted itself where no flow is open: their context, and their end
    (`own_runs[run id](failed)`, called by `execution.run_current` when the run ends)."""

    def __init__(self, context: FlowContext) -> None:
        self.context = context

    def __call__(self, failed: bool) -> None:
        close_engine(self.context, cancel=failed)


def _nested_context() -> FlowContext:
    """Where a task's own `.submit()` / `.map()` go when no flow is open around it (in a worker
    process, or a task called outside any flow): a context of the task run's own, on threads of
    its process, as many as the runs waiting need. A task that waits for what it submitted then
    never starves the pool (Prefect's thread runner has no limit either), and no process pool
    starts inside a worker (nested at each level of a recursive task, loky refuses past 10).
    When the task run ends, so do they: its runs are waited for (cancelled if it failed), its
    threads stop."""
    run = current_task_run.get()
    assert run is not None and run.run_id is not None
    with _detached_lock:
        found = own_runs.get(run.run_id)
        if not isinstance(found, _OwnRuns):
            flow_run = FlowRun(name=f"runs-of-{run.name}", flow_name="<no flow>", start_time=time.time())
            found = own_runs[run.run_id] = _OwnRuns(
                open_context(flow_run, ThreadPoolTaskRunner(max_workers=sys.maxsize), False, None))
        return found.context


_standalone: FlowContext | None = None


class _StandaloneObserver(ConsoleObserver):
    """A task run outside any flow logs its end only, as Prefect's standalone task runs do."""

    def runs_created(self, flow_run: FlowRun, runs: list[TaskRun], mapped: bool) -> None:
        pass


def standalone_context() -> FlowContext:
    """Where a task called directly outside any flow runs, as in Prefect: a task run of its own
    (`TaskRunContext`, retries, timeout, hooks, cache, `return_state`) executed in the caller.
    No engine thread and no pool: a direct run needs only run ids, a waiter and a tracker."""
    global _standalone
    with _detached_lock:
        if _standalone is None:
            configure_logging()
            flow_run = FlowRun(name="standalone-task-runs", flow_name="<no flow>", start_time=time.time())
            observer = _StandaloneObserver(live=False)  # no records: no flow run to report on
            engine = Engine(ThreadPoolTaskRunner(), observer)  # never started: its waiter and ids are what is used
            _standalone = FlowContext(flow_run, engine, engine.new_tracker(flow_run, False), observer, False,
                                      standalone=True)
        return _standalone


def _close_detached() -> None:
    if _detached is not None:
        close_engine(_detached, timeout=30)


def close_engine(context: FlowContext, timeout: float | None = None, cancel: bool = False) -> None:
    """The end of an engine opened for runs outside any flow (the detached one, a runner used
    directly): its runs end (`cancel`: those not started are cancelled), its stored results
    are freed, its thread stops. Ctrl-C while waiting cancels the runs instead of leaving them."""
    engine, tracker = context.engine, context.tracker
    try:
        if cancel:
            engine.cancel(tracker)
        engine.wait_for(tracker, timeout)
    except BaseException:
        engine.cancel(tracker)
        raise
    finally:
        engine.close_flow(tracker)
        engine.stop()


class RunnerRuns:
    """The runs a task runner is given directly (`with runner: runner.submit(task, parameters)`,
    as Prefect's engine and tests use one): a flow run of their own on that runner, for the block."""

    def __init__(self, runner: Runner) -> None:
        flow_run = FlowRun(name=f"{runner.name}-task-runner-runs", flow_name="<no flow>", start_time=time.time())
        self.context = open_context(flow_run, runner, False, None)

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any) -> Any:
        with self._current():
            return task.submit(**parameters, wait_for=wait_for)

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Any) -> Any:
        with self._current():
            return task.map(**parameters, wait_for=wait_for)

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        token = current_flow.set(self.context)
        try:
            yield
        finally:
            current_flow.reset(token)

    def close(self, interrupted: bool) -> None:
        """Leaving the `with` block: its runs end first (an error in the block cancels those not started)."""
        close_engine(self.context, cancel=interrupted)


DirectUse.opener = RunnerRuns  # what `with runner:` opens (the runners import no context)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """Prefect's `get_run_context()`: the task run in progress, else the flow run, else
    `MissingContextError`. A flow called inside a task is the flow run."""
    entered: TaskRunContext | FlowRunContext | None = (TaskRunContext._entered.get()
                                                        or FlowRunContext._entered.get())  # one a test entered
    if entered is not None:
        return entered
    task_run, flow = current_task_run.get(), current_flow.get()
    if task_run is not None and task_run.run_id is not None:
        if flow is None or flow.flow_run.name == task_run.flow_run_name:
            return TaskRunContext.of(task_run)
    if flow is not None:
        return FlowRunContext(flow.flow_run, flow.flow)
    raise MissingContextError("No run context available. You are not in a flow or task run context.")
