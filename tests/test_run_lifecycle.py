"""The run lifecycle (`procflow.lifecycle`) driven like the scheduler: fake outcomes, integer
run ids, no engine thread, no runner, no processes. Each transition's effects are checked."""

from __future__ import annotations

from typing import Any

import pytest

from procflow import task
from procflow.entries import Entry, Tracker
from procflow.task_future import TaskFuture, Waiter
from procflow.lifecycle import (CancelRunning, Interrupt, Keep, Lifecycle, LogRetry, Print, Publish, RunHooks,
                                Watch)
from procflow.lifetimes import HeldResults
from procflow.messages import Outcome, Status
from procflow.records import FlowRun, TaskRun
from procflow.states import Completed, LazyResult, Pending, StateType


def work(x=None):
    return x


class World:
    """One flow run's lifecycle, with the engine's two chores done by hand: dispatching what is
    ready (an attempt begins) and publishing states (the records take them)."""

    def __init__(self) -> None:
        self.life = Lifecycle()
        self.flow_run = FlowRun(name="test-run", flow_name="test")
        self.tracker = Tracker(self.flow_run, False, HeldResults(lambda result: None))
        self.waiter = Waiter()
        self.runs: dict[str, Entry] = {}

    def entry(self, name: str, fn: Any = None, after: tuple[str, ...] = (), allowed: tuple[str, ...] = ()) -> Entry:
        the_task = fn if fn is not None else task(work)
        run = TaskRun(len(self.runs) + 1, name, the_task.name, self.flow_run.name)
        upstream = [(TaskFuture(self.runs[up].run, self.waiter), up in allowed) for up in (*after, *allowed)]
        made = self.runs[name] = Entry(run, the_task, (), {}, upstream, 0, self.tracker)
        return made

    def add(self, *entries: Entry) -> list[Any]:
        return self.publish(self.life.add(list(entries)))

    def dispatch(self) -> list[str]:
        popped = self.life.scheduler.pop_ready(100)
        for run_id in popped:
            self.life.entries[run_id].run.attempts += 1
        return [self.name(run_id) for run_id in popped]

    def end(self, name: str, status: Status, now: float = 0.0, **fields: Any) -> list[Any]:
        return self.publish(self.life.outcome(Outcome(self.runs[name].run.id, status, **fields), now))

    def publish(self, effects: list[Any]) -> list[Any]:
        for effect in effects:
            if isinstance(effect, Publish):
                effect.run.state = effect.state
        self.life.published()
        return effects

    def name(self, run_id: int) -> str:
        return next(name for name, entry in self.runs.items() if entry.run.id == run_id)


def finals(effects: list[Any]) -> dict[str, str]:
    """The runs the effects end, with the name of their last state."""
    return {effect.run.name: effect.state.name for effect in effects if isinstance(effect, Publish) and effect.tracker}


class Stored(LazyResult):
    """A result held elsewhere (a segment, a Dask worker), as a runner reports it."""

    holds_storage = True


def test_a_completed_run_is_published_and_releases_its_dependent_and_a_stored_result_is_kept():
    world = World()
    world.add(world.entry("a"), world.entry("b", after=("a",)))
    assert world.dispatch() == ["a"]
    effects = world.end("a", Status.COMPLETED, value=3)
    assert [type(effect) for effect in effects] == [Publish]  # a small plain value: nothing to keep
    assert effects[0].state.data == 3 and finals(effects) == {"a": "Completed"}
    assert world.dispatch() == ["b"]
    stored = Stored()
    effects = world.end("b", Status.COMPLETED, value=stored)
    assert [type(effect) for effect in effects] == [Keep, Publish] and effects[0].state.data is stored
    assert world.life.entries == {} and world.life.scheduler.idle


def test_a_failure_blocks_its_dependents_which_end_not_ready_naming_it_and_an_allowed_edge_runs():
    world = World()
    world.add(world.entry("a"), world.entry("b", after=("a",)), world.entry("c", allowed=("a",)))
    world.dispatch()
    effects = world.end("a", Status.FAILED, error=ValueError("bad"))
    assert finals(effects) == {"a": "Failed", "b": "NotReady"}
    blocked = next(e for e in effects if isinstance(e, Publish) and e.run.name == "b")
    assert blocked.state.message == "Upstream task run 'a' did not reach a 'COMPLETED' state."
    assert world.dispatch() == ["c"]


def test_a_crash_is_retried_twice_then_the_third_in_a_row_ends_the_run_crashed():
    world = World()
    world.add(world.entry("a", task(work, retries=5)))
    for attempt in (1, 2):
        assert world.dispatch() == ["a"]
        effects = world.end("a", Status.CRASHED, now=10.0 * attempt, error_text="worker 77 died: SIGKILL")
        assert [type(effect) for effect in effects] == [LogRetry, Publish]
        assert effects[1].state.name == "AwaitingRetry" and not effects[1].tracker
        assert world.dispatch() == []  # set aside until its delay passed
        world.publish(world.life.timers_due(10.0 * attempt))
    assert world.dispatch() == ["a"]
    effects = world.end("a", Status.CRASHED, error_text="worker 78 died: SIGKILL")
    assert finals(effects) == {"a": "Crashed"}
    assert world.runs["a"].run.attempts == 3


def test_a_retry_waits_out_its_delay_on_the_lifecycle_clock():
    world = World()
    world.add(world.entry("a", task(work, retries=1, retry_delay_seconds=10)))
    world.dispatch()
    world.end("a", Status.FAILED, now=100.0, error=OSError("flaky"))
    assert world.life.timers.wait(100.0) == 10.0
    world.publish(world.life.timers_due(109.9))
    assert world.dispatch() == []
    world.publish(world.life.timers_due(110.0))
    assert world.dispatch() == ["a"]
    assert finals(world.end("a", Status.COMPLETED, value=1)) == {"a": "Completed"}


@pytest.mark.parametrize("status", [Status.LOST, Status.SPENT])
def test_a_run_that_did_not_run_is_ready_again_without_spending_an_attempt(status):
    world = World()
    world.add(world.entry("a"))
    world.dispatch()
    assert world.end("a", status) == []
    assert world.runs["a"].run.attempts == 0
    assert world.dispatch() == ["a"]


def test_a_fused_link_deferred_behind_a_retried_upstream_waits_for_its_retry_then_runs():
    world = World()
    world.add(world.entry("a", task(work, retries=1)), world.entry("b", after=("a",)))
    assert world.dispatch() == ["a"]
    b = world.runs["b"]
    world.life.scheduler.claim(b.run.id)  # sent behind `a` in the same message (dispatch.py)
    b.run.attempts = 1
    world.end("a", Status.FAILED, error=RuntimeError("once"))
    assert world.end("b", Status.DEFERRED) == []  # `a` runs again: `b` waits for it
    assert b.run.attempts == 0
    world.publish(world.life.timers_due(0.0))
    assert world.dispatch() == ["a"]
    world.end("a", Status.COMPLETED, value=1)
    assert world.dispatch() == ["b"]


def test_a_fused_link_behind_an_upstream_that_failed_for_good_ends_not_ready():
    world = World()
    world.add(world.entry("a"), world.entry("b", after=("a",)), world.entry("c", after=("b",)))
    world.dispatch()
    b = world.runs["b"]
    world.life.scheduler.claim(b.run.id)
    b.run.attempts = 1
    assert finals(world.end("a", Status.FAILED, error=KeyError("k"))) == {"a": "Failed"}
    assert finals(world.end("b", Status.DEFERRED)) == {"b": "NotReady", "c": "NotReady"}
    assert world.life.entries == {}


def test_cancel_while_a_runs_hooks_keeps_that_run_until_they_ran_and_cancels_the_pending():
    ran: list[str] = []
    hooked = task(work, on_failure=[lambda t, r, s: ran.append("hook")])
    world = World()
    world.add(world.entry("a", hooked), world.entry("b", after=("a",)), world.entry("c"))
    assert world.dispatch() == ["a", "c"]
    effects = world.end("a", Status.FAILED, error=ValueError("v"))
    assert [type(effect) for effect in effects] == [RunHooks] and effects[0].ends and not effects[0].ok
    hooks = effects[0]
    cancelled = world.publish(world.life.cancel(world.tracker, only_this_flow=False))
    assert finals(cancelled) == {"b": "Cancelled"}
    assert isinstance(cancelled[-1], CancelRunning)
    assert world.runs["a"].run.id in world.life.entries  # its end waits for its hooks
    ended = world.publish(world.life.hooks_ran(hooks.entry, hooks.state, hooks.ok))
    assert finals(ended) == {"a": "Failed"}
    assert finals(world.end("c", Status.CANCELLED)) == {"c": "Cancelled"}
    assert world.life.entries == {}


def test_a_run_waiting_to_retry_is_cancelled_with_its_flow_run():
    world = World()
    world.add(world.entry("a", task(work, retries=3, retry_delay_seconds=60)), world.entry("b", after=("a",)))
    world.dispatch()
    world.end("a", Status.FAILED, error=OSError("x"))
    effects = world.publish(world.life.cancel(world.tracker, only_this_flow=False))
    assert finals(effects) == {"a": "Cancelled", "b": "Cancelled"}
    assert world.life.timers.wait(0.0) is None


def test_a_deadline_interrupts_a_running_run_and_a_stale_one_does_nothing():
    world = World()
    world.add(world.entry("a", task(work, timeout_seconds=5)))
    world.dispatch()
    world.life.timers.push(5.0, "deadline", world.runs["a"].run.id, 1)
    world.life.timers.push(6.0, "deadline", world.runs["a"].run.id, 0)  # an earlier attempt's
    effects = world.life.timers_due(6.0)
    assert effects == [Interrupt(world.runs["a"].run.id, 5, 1)]
    assert finals(world.end("a", Status.TIMED_OUT, error=TimeoutError())) == {"a": "TimedOut"}
    world.life.timers.push(7.0, "deadline", world.runs["a"].run.id, 1)
    assert world.life.timers_due(7.0) == []  # it has ended


def test_a_cache_hit_ends_the_run_unsubmitted_and_its_dependent_becomes_ready():
    world = World()
    world.add(world.entry("a"), world.entry("b", after=("a",)))
    world.dispatch()
    effects = world.publish(world.life.finish(world.runs["a"], Completed(41)))
    assert finals(effects) == {"a": "Completed"}
    assert world.dispatch() == ["b"]


def test_an_upstream_of_another_flow_run_is_watched_and_its_failure_blocks():
    elsewhere = TaskRun(999, "other-0", "other", "another-run", state=Pending())
    world = World()
    downstream = world.entry("b")
    downstream.upstream.append((TaskFuture(elsewhere, world.waiter), False))
    effects = world.add(downstream)
    assert [type(effect) for effect in effects] == [Watch] and effects[0].future.task_run is elsewhere
    assert world.dispatch() == []
    elsewhere.state = world.life.records[999].state = Completed(None).__class__(StateType.FAILED, "Failed")
    assert finals(world.publish(world.life.upstream_ended(999, False))) == {"b": "NotReady"}


def test_a_runs_printed_lines_come_before_its_end():
    world = World()
    world.add(world.entry("a"))
    world.dispatch()
    effects = world.end("a", Status.COMPLETED, value=None, logs=((20, "hello"),))
    assert [type(effect) for effect in effects] == [Print, Publish]
    assert effects[0].lines == ((20, "hello"),)
