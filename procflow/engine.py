"""The parent's one dispatch thread: events in, the lifecycle's effects carried out.

    user thread:  add(entries) ----------------\\
    runner:       outcomes (any thread) --------> one SimpleQueue --> engine thread
    futures:      external upstream finished --/
    hook threads: a run's hooks ran ----------/
    engine thread: each event -> `Lifecycle` (pure: the scheduler, the entries, retries and
                   timeouts) -> effects: states published to futures under one condition,
                   observers told, results kept, hooks run; then ready runs are popped as
                   far as the runner has room and submitted (`dispatch.py`); the queue
                   wait's timeout is the next timer's deadline.

Only this thread touches the lifecycle. Nothing here parks a thread per waiting run.
Large results: a run's shared-memory result is released when its future is garbage
collected (pending downstream runs hold the future in their arguments), or at the
latest when its flow run closes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Union

from . import caching
from .dispatch import Dispatcher
from .entries import Entry, Tracker
from .events import Observer
from .task_future import Waiter
from .hooks import HookThreads, call_hooks
from .lifecycle import (CancelRunning, Effect, Interrupt, Keep, Lifecycle, LogRetry, Print, Publish, RunHooks,
                        Watch)
from .lifetimes import HeldResults
from .messages import Outcome
from .publish import Publisher
from .records import FlowRun
from .run_ids import next_run_id
from .results.store import storage_directory
from .runlog import log_retry, task_emitter
from .runners.base import Runner
from .shm import ResultRef
from .spill import Spiller
from .states import LazyResult, State



# -- what the engine's queue carries: one typed event per kind -----------------------------

@dataclass(frozen=True, slots=True)
class OutcomesIn:
    """A runner reports (any thread)."""
    outcomes: list[Outcome]


@dataclass(frozen=True, slots=True)
class RunsAdded:
    """`.submit()` / `.map()` made runs (a user thread)."""
    entries: list[Entry]


@dataclass(frozen=True, slots=True)
class UpstreamEnded:
    """A run of another flow run, an upstream of ours, finished (its future's callback)."""
    run_id: int
    ok: bool


@dataclass(frozen=True, slots=True)
class CancelAsked:
    """Ctrl-C or a flow's timeout (see `Engine.cancel`)."""
    tracker: Tracker
    only_this_flow: bool


@dataclass(frozen=True, slots=True)
class HooksRan:
    """A finished run's state hooks ran (the hook threads): its end is published now."""
    entry: Entry
    state: State
    ok: bool


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Event = Union[OutcomesIn, RunsAdded, UpstreamEnded, CancelAsked, HooksRan, Stop]


class Engine:
    def __init__(self, runner: Runner, observer: Observer) -> None:
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._events = events
        self.runner = runner.start(lambda outcomes: events.put(OutcomesIn(outcomes)))  # this run's session
        self.observer = observer
        self.waiter = Waiter()
        self.lifecycle = Lifecycle(depth_first=runner.depth_first)
        self._hooks = HookThreads()
        self._out = Publisher(self.waiter, observer)
        self._dispatcher = Dispatcher(self.lifecycle, self.runner, self._apply, self._publish)
        self._thread = threading.Thread(target=self._loop, name="procflow-engine", daemon=True)

    # -- called from user threads ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def next_run_id(self) -> int:
        return next_run_id()  # unique across processes too (`run_ids.py`)

    def new_tracker(self, flow_run: FlowRun, log_prints: bool) -> Tracker:
        return Tracker(flow_run, log_prints, HeldResults(self.runner.release))

    def add(self, entries: list[Entry]) -> None:
        tracker = entries[0].tracker
        with self.waiter.condition:
            tracker.unfinished += len(entries)
        self._events.put(RunsAdded(entries))

    def wait_for(self, tracker: Tracker, timeout: float | None = None) -> bool:
        """Block until every run of the flow run has finished; False on timeout."""
        with self.waiter.condition:
            return self.waiter.condition.wait_for(lambda: tracker.unfinished <= 0, timeout)

    def cancel(self, tracker: Tracker, timeout: float = 2.0, only_this_flow: bool = False) -> None:
        """Ctrl-C, or a flow's timeout: pending runs cancelled, running ones interrupted; wait
        briefly (a task thread blocked in C code never ends, and the flow must be gone within 5 s).

        `only_this_flow` (a nested flow's timeout, on its parent's engine): only that flow run's
        pending runs; its running ones finish, as stopping them would stop the parent's too.
        """
        self._events.put(CancelAsked(tracker, only_this_flow))
        self.wait_for(tracker, timeout)

    def close_flow(self, tracker: Tracker) -> None:
        """The flow run ended: free its stored results (values already read stay valid)."""
        tracker.flow_run.held_bytes_peak = tracker.results.peak
        tracker.results.close()
        if tracker.spiller is not None:  # after close(): what users still hold is mapped by now
            tracker.spiller.close()

    def stop(self) -> None:
        self._events.put(Stop())
        self._thread.join()
        self._hooks.shutdown()
        self.runner.shutdown()

    # -- the engine thread --------------------------------------------------------------

    def _loop(self) -> None:
        events, lifecycle = self._events, self.lifecycle
        while True:
            wait = lifecycle.timers.wait(time.time())
            try:
                batch = [events.get(timeout=wait) if wait is not None else events.get()]
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            try:
                for event in batch:
                    if isinstance(event, Stop):
                        self._publish()
                        return
                    self._handle(event)
                self._apply(lifecycle.timers_due(time.time()))
                self._publish()  # downstream arguments read their upstreams' published states
                self._dispatcher.dispatch()
            except Exception as error:  # noqa: BLE001 - never let the engine die silently, or hang its flows
                logging.getLogger("procflow.engine").exception("procflow engine error")
                self._apply(lifecycle.fail_pending(error))
            self._publish()

    def _handle(self, event: Event) -> None:
        lifecycle = self.lifecycle
        match event:
            case OutcomesIn(outcomes):
                now = time.time()
                for outcome in outcomes:
                    try:
                        effects = lifecycle.outcome(outcome, now)
                    except Exception as error:  # noqa: BLE001 - a run left unfinished would leave its flow waiting
                        logging.getLogger("procflow.engine").exception("procflow engine error")
                        effects = lifecycle.fail_unhandled(outcome.run_id, error)
                    self._apply(effects)
            case RunsAdded(entries):
                self._apply(lifecycle.add(entries))
            case UpstreamEnded(run_id, ok):
                self._apply(lifecycle.upstream_ended(run_id, ok))
            case CancelAsked(tracker, only_this_flow):
                self._apply(lifecycle.cancel(tracker, only_this_flow))
            case HooksRan(entry, state, ok):
                self._apply(lifecycle.hooks_ran(entry, state, ok))

    # -- effects ------------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        out = self._out
        for effect in effects:
            match effect:
                case Publish(run, state, None):
                    out.change(run, state)
                case Publish(run, state, tracker):
                    out.finish(run, state, tracker)
                case Print(run, lines, flow_run):
                    out.printed(run, lines, flow_run)
                case Keep(entry, state):
                    self._keep(entry, state)
                case RunHooks():
                    self._run_hooks(effect)
                case LogRetry(run_name, reason):
                    log_retry(run_name, reason)
                case Interrupt(run_id, timeout, attempt):
                    again = self.runner.interrupt(run_id, timeout)
                    if again is not None:
                        self.lifecycle.timers.push(time.time() + again, "deadline", run_id, attempt)
                case CancelRunning():
                    self.runner.cancel_running()
                case Watch(future):
                    future.add_done_callback(
                        lambda f: self._events.put(UpstreamEnded(f.task_run.id, f.state.is_completed())))

    def _publish(self) -> None:
        self._out.publish()
        self.lifecycle.published()

    def _run_hooks(self, effect: RunHooks) -> None:
        entry, state = effect.entry, effect.state
        run = entry.run
        then = (lambda: self._events.put(HooksRan(entry, state, effect.ok))) if effect.ends else (lambda: None)
        def run_them() -> None:
            if effect.before is not None:
                effect.before()  # the end of the run's transaction (it logs its own errors)
            call_hooks(list(effect.hooks), entry.task, run, state, task_emitter(run.name))

        self._hooks.submit(run_them, then)

    def _keep(self, entry: Entry, state: State) -> None:
        """A completed result: in its flow run's cache; in custody while its future or a
        pending run needs it; spilled to disk from shared memory if memory runs short. One its
        transaction stores when it commits is loaded here first: it outlives its future."""
        value = state.data
        if entry.transaction is not None and entry.transaction.defers() and entry.cache_plan is not None:
            entry.transaction.kept = value.load() if isinstance(value, LazyResult) else value
        else:
            caching.remember(entry.cache_plan, entry.tracker.cache, state, entry.run)
        if isinstance(value, LazyResult) and value.holds_storage:
            tracker = entry.tracker
            if isinstance(value, ResultRef):
                if tracker.spiller is None:
                    tracker.spiller = Spiller(tracker.flow_run.name, tracker.storage or storage_directory())
                tracker.spiller.place(value)
            tracker.results.hold(entry.run.id, entry.future() if entry.future else None, value)
            if tracker.spiller is not None:
                tracker.spiller.check(tracker.results.results)
