"""The life of every run the engine still has to finish: a pure state machine (issue 17).

It owns the scheduler (which runs are ready), the entries (what each run calls and
waits for), the run records it has seen and the timers (retry delays, deadlines). Each
transition takes an event and returns *effects*, small frozen values saying what to do;
it does nothing itself, so tests drive it with fake outcomes and no processes
(`tests/test_run_lifecycle.py`, in milliseconds). The engine (`engine.py`) carries effects out:

    add(entries)            -> Watch(future)      an upstream of another flow run: tell me when it ends
    outcome(outcome, now)   -> Print, Keep, LogRetry, Publish, RunHooks
    timers_due(now)         -> Interrupt(run)     past its deadline; a retry's delay over: ready again
    hooks_ran(entry, ...)   -> Publish            a run's end is visible once its hooks ran
    cancel(tracker, ...)    -> Publish, CancelRunning
    finish(entry, state)    -> RunHooks | Publish (a cache hit, a run that could not be dispatched)

What an attempt's end means (finish, retry or put back) is `attempts.decide`, shared with
direct calls. A run that ends blocks its dependents that do not allow its failure: they
end `NotReady`, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

from .attempts import NOT_RUN, Finish, PutBack, Retry, decide
from .entries import Entry, Tracker
from .task_future import TaskFuture
from .caching import stored_at_commit
from .hooks import hooks_for
from .messages import Outcome, Status
from .records import FlowRun, TaskRun
from .scheduler import Scheduler
from .states import Cancelled, Failed, LazyResult, NotReady, State, is_terminal
from .task_transactions import ending as ending_of, received
from .timers import Timers

Lines = tuple[tuple[int, str], ...]


# -- effects: what the engine is asked to do -------------------------------------------

@dataclass(frozen=True, slots=True)
class Publish:
    """A run's new state; with its `tracker`, the run's last (its flow run counts it done)."""
    run: TaskRun
    state: State
    tracker: Tracker | None = None


@dataclass(frozen=True, slots=True)
class Print:
    """Lines the run printed or logged in its worker (artifacts among them)."""
    run: TaskRun
    lines: Lines
    flow_run: FlowRun


@dataclass(frozen=True, slots=True)
class Keep:
    """A completed run's result to keep: remembered by its flow run's cache (it has a cache plan),
    or held (and spilled) while needed (it lives in a segment or on a worker)."""
    entry: Entry
    state: State


@dataclass(frozen=True, slots=True)
class RunHooks:
    """Run state hooks on the hook threads; `ends`: then the run ends (`hooks_ran`), `ok` as given."""
    entry: Entry
    hooks: tuple[Any, ...]
    state: State
    ends: bool = True
    ok: bool = False
    before: Callable[[], None] | None = None  # first: the end of the run's transaction (`task_transactions`)


@dataclass(frozen=True, slots=True)
class LogRetry:
    run_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Interrupt:
    """The run is past its deadline: stop it (the runner may ask to be asked again later)."""
    run_id: int
    timeout: float
    attempt: int


@dataclass(frozen=True, slots=True)
class CancelRunning:
    """Ctrl-C: every running run is stopped now."""


@dataclass(frozen=True, slots=True)
class Watch:
    """An upstream of another flow run: report its end (`upstream_ended`)."""
    future: TaskFuture[Any]


Effect = Union[Publish, Print, Keep, RunHooks, LogRetry, Interrupt, CancelRunning, Watch]


class Lifecycle:
    """Runs from submission to their last state; every method returns the effects to carry out."""

    def __init__(self, depth_first: bool = True) -> None:
        self.scheduler = Scheduler(depth_first=depth_first)
        self.entries: dict[int, Entry] = {}
        self.records: dict[int, TaskRun] = {}
        self.timers = Timers()
        self._effects: list[Effect] = []
        self._unpublished: dict[int, State] = {}  # states decided since the last publish (a blocked run names them)

    def _take(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def published(self) -> None:
        """The engine made the states it was given visible: the records hold them now."""
        self._unpublished.clear()

    # -- transitions ------------------------------------------------------------------

    def add(self, entries: list[Entry]) -> list[Effect]:
        for entry in entries:
            run = entry.run
            self.entries[run.id] = entry
            self.records[run.id] = run
            pairs = []
            for future, allowed in entry.upstream:
                upstream = future.task_run
                if upstream.id not in self.records:  # a future of another flow run: known from now on
                    self.records[upstream.id] = upstream
                    if is_terminal(upstream.state):
                        self.scheduler.finished_elsewhere(upstream.id, upstream.state.is_completed())
                    else:
                        self._effects.append(Watch(future))
                pairs.append((upstream.id, not allowed))
            self._block_all(self.scheduler.add(run.id, pairs))
        return self._take()

    def outcome(self, outcome: Outcome, now: float) -> list[Effect]:
        entry = self.entries.get(outcome.run_id)
        if entry is None:  # cancelled meanwhile
            return []
        run, status = entry.run, outcome.status
        if status not in NOT_RUN:
            if run.ready_time is None:  # when its last upstream ended (fused runs too; first attempt)
                run.ready_time = max([run.created_time, *(f.task_run.end_time or 0.0 for f, _ in entry.upstream)])
            run.start_time, run.end_time = outcome.start or None, outcome.end or None
            run.worker, run.transfer_seconds, run.loading_seconds = outcome.worker, outcome.transfer, outcome.loading
            if outcome.logs:
                self._effects.append(Print(run, outcome.logs, entry.tracker.flow_run))
            if outcome.transaction_values:
                received(entry.transaction, outcome.transaction_values)
            entry.crashes = entry.crashes + 1 if status is Status.CRASHED else 0
        decision = decide(entry.task, run, status, outcome.value, outcome.error, outcome.error_text, entry.crashes)
        if isinstance(decision, PutBack):
            run.attempts -= 1  # it did not run: no attempt, no retry spent
            self._put_back(entry)
        elif isinstance(decision, Retry):
            self._retry(entry, decision, now)
        else:
            if status is Status.COMPLETED:
                stored = isinstance(outcome.value, LazyResult)
                run.result_bytes = outcome.value.nbytes if stored else 0
                if entry.cache_plan is not None or (stored and outcome.value.holds_storage):
                    self._effects.append(Keep(entry, decision.state))  # a plain small value: nothing to keep
            self._finish(entry, decision)
        return self._take()

    def upstream_ended(self, run_id: int, ok: bool) -> list[Effect]:
        """An upstream of another flow run, watched since a run here took its future, ended."""
        self._block_all(self.scheduler.finished_elsewhere(run_id, ok))
        return self._take()

    def finish(self, entry: Entry, state: State) -> list[Effect]:
        """End a run that will not be submitted: a cache hit, or one that could not be dispatched."""
        self._finish(entry, Finish(state))
        return self._take()

    def hooks_ran(self, entry: Entry, state: State, ok: bool) -> list[Effect]:
        self._end(entry, state, ok)
        return self._take()

    def timers_due(self, now: float) -> list[Effect]:
        for timer in self.timers.due(now):
            entry = self.entries.get(timer.run_id)
            if entry is None or entry.run.attempts != timer.attempt or entry.hooked:
                continue  # finished (its hooks may be running), or a later attempt runs
            if timer.kind == "retry":
                self._put_back(entry)  # a fused run may have lost its upstream's result with the batch
            elif timer.kind == "deadline" and self.scheduler.is_running(timer.run_id):
                self._effects.append(Interrupt(timer.run_id, entry.task.timeout_seconds, timer.attempt))
        return self._take()

    def cancel(self, tracker: Tracker, only_this_flow: bool) -> list[Effect]:
        """Ctrl-C (every pending run, and the running ones stopped), or a nested flow's timeout
        (`only_this_flow`: that flow run's pending runs; its running ones finish)."""
        if only_this_flow:
            ours = [run_id for run_id, entry in self.entries.items() if entry.tracker is tracker]
            cancelled, blocked = self.scheduler.cancel(ours)
        else:
            cancelled, blocked = self.scheduler.cancel_pending(), []
        # One state for all (frozen, so nothing tells them apart): a million pending runs of a
        # huge map are cancelled within the 5 s of SPEC §7.
        state = Cancelled("The flow run was interrupted before this run started.")
        for run_id in cancelled:
            entry = self.entries.pop(run_id, None)
            if entry is not None:
                self._publish(entry.run, state, entry.tracker)
        self._block_all(blocked)
        if not only_this_flow:
            for timer in self.timers.clear():
                if timer.kind == "retry":  # issue 19: it stayed AwaitingRetry for ever, its future unset
                    self._cancel_retry(timer.run_id, timer.attempt)
            self._effects.append(CancelRunning())
        return self._take()

    def fail_pending(self, error: Exception) -> list[Effect]:
        """Issue 19: an error no run can be charged with (dispatch, a timer) left ready runs
        waiting for ever. Every run not finished yet fails, naming the cause; futures wake."""
        for entry in list(self.entries.values()):
            if entry.hooked or entry.run.id not in self.entries:
                continue
            failure = _engine_error(f"procflow's engine failed while task run '{entry.run.name}' was pending", error)
            try:
                if self.scheduler.is_running(entry.run.id):
                    self._finish(entry, Finish(Failed(failure)))
                else:  # waiting, ready or waiting out a retry delay: it ends where it stands
                    self._end_unstarted(entry, Failed(failure))
            except Exception:  # noqa: BLE001 - the next one still fails rather than hangs
                if self.entries.pop(entry.run.id, None) is not None:
                    self._publish(entry.run, Failed(failure), entry.tracker)
        return self._take()

    def fail_unhandled(self, run_id: int, error: Exception) -> list[Effect]:
        """procflow's own bug met a run's outcome: the run fails with it, its flow goes on. What
        the failed transition said before it failed stands (a run it ended is published)."""
        entry = self.entries.get(run_id)
        if entry is not None:
            failure = _engine_error(f"procflow could not record the outcome of task run '{entry.run.name}'", error)
            self._finish(entry, Finish(Failed(failure)))
        return self._take()

    # -- the steps they share ------------------------------------------------------------

    def _publish(self, run: TaskRun, state: State, tracker: Tracker | None = None) -> None:
        self._unpublished[run.id] = state
        self._effects.append(Publish(run, state, tracker))

    def _retry(self, entry: Entry, retry: Retry, now: float) -> None:
        run = entry.run
        self._effects.append(LogRetry(run.name, retry.reason))
        self._publish(run, retry.waiting)
        self.scheduler.set_aside(run.id)
        self.timers.push(now + retry.delay, "retry", run.id, run.attempts)

    def _finish(self, entry: Entry, finish: Finish) -> None:
        """The run's state hooks first (on the hook threads); it ends when they have run."""
        if entry.hooked:
            due, ending = None, None
        else:
            due = hooks_for(entry.task.options.state_hooks, finish.state)
            ending = None if entry.transaction is None else ending_of(
                entry.transaction, entry.task, finish.state, entry.run.name, _stored_at_commit(entry, finish.state))
        if due or ending:
            entry.hooked = True
            self._effects.append(RunHooks(entry, tuple(due or ()), finish.state, ends=True, ok=finish.ok,
                                          before=ending))
            return
        self._end(entry, finish.state, finish.ok)

    def _end(self, entry: Entry, state: State, ok: bool) -> None:
        run = entry.run
        del self.entries[run.id]
        self._publish(run, state, entry.tracker)
        self._block_all(self.scheduler.finish(run.id, ok))

    def _block(self, run_id: int, upstream_id: int) -> None:
        entry = self.entries.pop(run_id, None)
        if entry is None:
            return
        upstream = self.records[upstream_id]
        upstream_state = self._unpublished.get(upstream_id, upstream.state)
        error = upstream_state.data if isinstance(upstream_state.data, BaseException) else None
        self._publish(entry.run, NotReady(upstream.name, error), entry.tracker)

    def _block_all(self, blocked: list[tuple[int, int]]) -> None:
        """Each (run, upstream that did not complete) the scheduler says a step blocked."""
        for run_id, upstream_id in blocked:
            self._block(run_id, upstream_id)

    def _put_back(self, entry: Entry) -> None:
        """A run that did not run: ready again, waiting again for the upstreams fused ahead of it
        that run again, or blocked by one that failed."""
        upstreams = [(future.task_run.id, not allowed) for future, allowed in entry.upstream]
        self._block_all(self.scheduler.put_back(entry.run.id, upstreams))

    def _cancel_retry(self, run_id: int, attempt: int) -> None:
        entry = self.entries.get(run_id)
        if entry is None or entry.run.attempts != attempt or entry.hooked:
            return
        self._end_unstarted(entry, Cancelled("The flow run was interrupted while this run waited to retry."))

    def _end_unstarted(self, entry: Entry, state: State) -> None:
        """End a run that is not running (waiting, ready, or waiting out a retry delay)."""
        del self.entries[entry.run.id]
        self._publish(entry.run, state, entry.tracker)
        self._block_all(self.scheduler.cancel([entry.run.id])[1])


def _stored_at_commit(entry: Entry, state: State) -> Callable[[], None] | None:
    """A completed run whose transaction stores its result when it commits (`Keep` loaded it)."""
    transaction = entry.transaction
    if transaction is None or not transaction.defers():
        return None  # the worker stored it, or it is not to be stored
    return stored_at_commit(entry.cache_plan, entry.tracker.cache, entry.run, state, lambda: transaction.kept)


def _engine_error(what: str, error: Exception) -> RuntimeError:
    """procflow's own failure, as the runs it ends see it: what failed, then the cause."""
    failure = RuntimeError(f"{what}: {type(error).__name__}: {error}")
    failure.__cause__ = error
    return failure
