"""The parent's one dispatch thread: ready runs -> runner; outcomes -> states.

    user thread:  add(entries) ----------------\\
    runner:       outcomes (any thread) --------> one SimpleQueue --> engine thread
    futures:      external upstream finished --/
    engine thread: scheduler.add / finish, retries and timeouts (a timer heap: the
                   queue wait's timeout is the next deadline), states published to
                   futures under one condition, observers told, then ready runs are
                   popped as far as the runner has room and submitted; with room to
                   spare, a chain link rides behind its upstream in the same message
                   (linear fusion, `dispatch.py`) and comes back `DEFERRED` when that
                   upstream did not complete in band (`_put_back`).

Only this thread touches the scheduler. Nothing here parks a thread per waiting run.
Large results: a run's shared-memory result is released when its future is garbage
collected (pending downstream runs hold the future in their arguments), or at the
latest when its flow run closes.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Union

from .dispatch import Dispatcher
from .entries import Entry, Tracker
from .events import Observer
from .futures import Waiter
from . import caching
from .results.store import storage_directory
from .shm import ResultRef
from .spill import Spiller
from .hooks import HookThreads, call_hooks, hooks_for
from .lifetimes import HeldResults
from .messages import Outcome, Status
from .publish import Publisher
from .records import FlowRun, TaskRun
from .runlog import log_retry, task_emitter
from .runners.base import Runner
from .scheduler import Scheduler
from .lifecycle import NOT_RUN, PutBack, Retry, decide
from .states import Cancelled, Failed, LazyResult, NotReady, State, is_terminal
from .timers import Timers

# Run ids are unique in the process: a future of an earlier flow run may be an argument.
_RUN_IDS = itertools.count(1)


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
    """A finished run's state hooks ran (the hook thread): its end is published now."""
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
        self.scheduler = Scheduler(depth_first=runner.depth_first)
        self._entries: dict[int, Entry] = {}
        self._records: dict[int, TaskRun] = {}
        self._timers = Timers()
        self._hooks = HookThreads()
        self._out = Publisher(self.waiter, observer)
        self._dispatcher = Dispatcher(self.scheduler, self._entries, self.runner, self._timers, self._finish,
                                      self._hooks, self._out.publish)
        self._thread = threading.Thread(target=self._loop, name="procflow-engine", daemon=True)

    # -- called from user threads ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def next_run_id(self) -> int:
        return next(_RUN_IDS)

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
        events = self._events
        while True:
            wait = self._timers.wait(time.time())
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
                        self._out.publish()
                        return
                    self._handle(event)
                self._fire_timers()
                self._out.publish()  # downstream arguments read their upstreams' published states
                self._dispatcher.dispatch()
            except Exception as error:  # noqa: BLE001 - never let the engine die silently, or hang its flows
                logging.getLogger("procflow.engine").exception("procflow engine error")
                self._fail_pending(error)
            self._out.publish()

    def _fail_pending(self, error: Exception) -> None:
        """Issue 19: an error no run can be charged with (dispatch, a timer) left ready runs
        waiting for ever. Every run not finished yet fails, naming the cause; futures wake."""
        for entry in list(self._entries.values()):
            if entry.hooked or entry.run.id not in self._entries:
                continue
            failure = RuntimeError(f"procflow's engine failed while task run '{entry.run.name}' was pending: "
                                   f"{type(error).__name__}: {error}")
            failure.__cause__ = error
            try:
                self._finish(entry, Failed(failure), False)
            except Exception:  # noqa: BLE001 - the next one still fails rather than hangs
                self._entries.pop(entry.run.id, None)
                self._out.finish(entry.run, Failed(failure), entry.tracker)

    def _handle(self, event: Event) -> None:
        match event:
            case OutcomesIn(outcomes):
                for outcome in outcomes:
                    try:
                        self._on_outcome(outcome)
                    except Exception as error:  # noqa: BLE001 - a run left unfinished would leave its flow waiting
                        self._fail_unhandled(outcome.run_id, error)
            case RunsAdded(entries):
                for entry in entries:
                    self._on_add(entry)
            case UpstreamEnded(run_id, ok):
                for blocked, blocked_by in self.scheduler.finish(run_id, ok):
                    self._block(blocked, blocked_by)
            case CancelAsked(tracker, only_this_flow):
                self._cancel(tracker, only_this_flow)
            case HooksRan(entry, state, ok):
                self._finish(entry, state, ok)

    def _fail_unhandled(self, run_id: int, error: Exception) -> None:
        """procflow's own bug met a run's outcome: the run fails with it, its flow goes on."""
        logging.getLogger("procflow.engine").exception("procflow engine error")
        entry = self._entries.get(run_id)
        if entry is not None:
            failure = RuntimeError(f"procflow could not record the outcome of task run '{entry.run.name}': "
                                   f"{type(error).__name__}: {error}")
            failure.__cause__ = error
            self._finish(entry, Failed(failure), False)

    def _on_add(self, entry: Entry) -> None:
        run = entry.run
        self._entries[run.id] = entry
        self._records[run.id] = run
        pairs = []
        for future, allowed in entry.upstream:
            upstream = future.task_run
            if upstream.id not in self._records:  # a future of another flow run: known from now on
                self._records[upstream.id] = upstream
                if is_terminal(upstream.state):
                    self.scheduler.add_finished(upstream.id, upstream.state.is_completed())
                else:
                    future.add_done_callback(
                        lambda f: self._events.put(UpstreamEnded(f.task_run.id, f.state.is_completed())))
            pairs.append((upstream.id, not allowed))
        for run_id, blocked_by in self.scheduler.add(run.id, pairs):
            self._block(run_id, blocked_by)

    def _on_outcome(self, outcome: Outcome) -> None:
        entry = self._entries.get(outcome.run_id)
        if entry is None:  # cancelled meanwhile
            return
        run, status = entry.run, outcome.status
        if status not in NOT_RUN:
            if run.ready_time is None:  # when its last upstream ended (fused runs too; first attempt)
                run.ready_time = max([run.created_time, *(f.task_run.end_time or 0.0 for f, _ in entry.upstream)])
            run.start_time, run.end_time = outcome.start or None, outcome.end or None
            run.worker, run.transfer_seconds = outcome.worker, outcome.transfer
            if outcome.logs:
                self._out.printed(run, outcome.logs, entry.tracker.flow_run)
            entry.crashes = entry.crashes + 1 if status is Status.CRASHED else 0
        decision = decide(entry.task, run, status, outcome.value, outcome.error, outcome.error_text, entry.crashes)
        if isinstance(decision, PutBack):
            run.attempts -= 1  # it did not run: no attempt, no retry spent
            self._put_back(entry)
        elif isinstance(decision, Retry):
            self._retry(entry, decision)
        elif status is Status.COMPLETED:
            run.result_bytes = outcome.value.nbytes if isinstance(outcome.value, LazyResult) else 0
            self._complete(entry, decision.state)
        else:
            self._finish(entry, decision.state, decision.ok)

    def _complete(self, entry: Entry, state: State) -> None:
        value = state.data
        caching.remember(entry.cache_plan, entry.tracker.cache, state, entry.run)
        if isinstance(value, LazyResult) and value.holds_storage:
            tracker = entry.tracker
            if isinstance(value, ResultRef):  # in shared memory: spilled to disk if memory runs short
                if tracker.spiller is None:
                    tracker.spiller = Spiller(tracker.flow_run.name, tracker.storage or storage_directory())
                tracker.spiller.place(value)
            tracker.results.hold(entry.run.id, entry.future() if entry.future else None, value)
            if tracker.spiller is not None:
                tracker.spiller.check(tracker.results.results)
        self._finish(entry, state, True)

    def _retry(self, entry: Entry, retry: Retry) -> None:
        run = entry.run
        log_retry(run.name, retry.reason)
        self._out.change(run, retry.waiting)
        self.scheduler.set_aside(run.id)
        self._timers.push(time.time() + retry.delay, "retry", run.id, run.attempts)

    def _finish(self, entry: Entry, state: State, ok: bool) -> None:
        run = entry.run
        due = hooks_for(entry.task.state_hooks, state) if not entry.hooked else None
        if due:  # the hooks first, on the hook thread; the run ends when they have run
            entry.hooked = True
            self._hooks.submit(lambda: call_hooks(due, entry.task, run, state, task_emitter(run.name)),
                               lambda: self._events.put(HooksRan(entry, state, ok)))
            return
        del self._entries[run.id]
        self._out.finish(run, state, entry.tracker)
        for run_id, blocked_by in self.scheduler.finish(run.id, ok):
            self._block(run_id, blocked_by)

    def _block(self, run_id: int, upstream_id: int) -> None:
        entry = self._entries.pop(run_id, None)
        if entry is None:
            return
        upstream = self._records[upstream_id]
        upstream_state = self._out.newest_state(upstream)
        error = upstream_state.data if isinstance(upstream_state.data, BaseException) else None
        self._out.finish(entry.run, NotReady(upstream.name, error), entry.tracker)

    def _put_back(self, entry: Entry) -> None:
        """A run that did not run: ready again, or waiting on (or blocked by) its fused upstream."""
        run_id, after = entry.run.id, entry.after
        entry.after = 0
        upstream_ok = self.scheduler.outcome(after) if after else True
        if upstream_ok is None:  # the upstream runs again (a retry, or it was lost too)
            self.scheduler.unclaim(run_id)
        elif upstream_ok:
            self.scheduler.requeue(run_id)
        else:
            self._block(run_id, after)
            for blocked, by in self.scheduler.finish(run_id, False):
                self._block(blocked, by)

    def _cancel(self, tracker: Tracker, only_this_flow: bool) -> None:
        if only_this_flow:
            ours = [run_id for run_id, entry in self._entries.items() if entry.tracker is tracker]
            cancelled, blocked = self.scheduler.cancel(ours)
        else:
            cancelled, blocked = self.scheduler.cancel_pending(), []
        # One state for all (frozen, so nothing tells them apart): a million pending runs of a
        # huge map are cancelled within the 5 s of SPEC §7.
        state = Cancelled("The flow run was interrupted before this run started.")
        pop, finish = self._entries.pop, self._out.finish
        for run_id in cancelled:
            entry = pop(run_id, None)
            if entry is not None:
                finish(entry.run, state, entry.tracker)
        for run_id, blocked_by in blocked:
            self._block(run_id, blocked_by)
        if not only_this_flow:
            for timer in self._timers.clear():
                if timer.kind == "retry":  # issue 19: it stayed AwaitingRetry for ever, its future unset
                    self._cancel_retry(timer.run_id, timer.attempt)
            self.runner.cancel_running()

    def _cancel_retry(self, run_id: int, attempt: int) -> None:
        entry = self._entries.get(run_id)
        if entry is None or entry.run.attempts != attempt or entry.hooked:
            return
        del self._entries[run_id]
        self._out.finish(entry.run, Cancelled("The flow run was interrupted while this run waited to retry."),
                         entry.tracker)
        for blocked_id, blocked_by in self.scheduler.finish(run_id, False):
            self._block(blocked_id, blocked_by)

    def _fire_timers(self) -> None:
        now = time.time()
        for timer in self._timers.due(now):
            entry = self._entries.get(timer.run_id)
            if entry is None or entry.run.attempts != timer.attempt or entry.hooked:
                continue  # finished (its hooks may be running), or a later attempt runs
            if timer.kind == "retry":
                self._put_back(entry)  # a fused run may have lost its upstream's result with the batch
            elif timer.kind == "deadline" and self.scheduler.is_running(timer.run_id):
                again = self.runner.interrupt(timer.run_id, entry.task.timeout_seconds)
                if again is not None:
                    self._timers.push(now + again, "deadline", timer.run_id, timer.attempt)

    # -- dispatch -------------------------------------------------------------------
