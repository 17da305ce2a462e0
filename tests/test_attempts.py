"""The run lifecycle's one decision (`attempts.decide`), driven with fake endings: no
processes, no engine, no threads. Submitted runs and direct calls both go through it."""

from __future__ import annotations

import dataclasses

import pytest

from procflow import task
from procflow.attempts import MAX_CRASHES, Finish, PutBack, Retry, decide, retry_delay
from procflow.messages import Status
from procflow.records import TaskRun
from procflow.states import ReturnedState, StateType


def run_after(attempts: int, worker: object = 1) -> TaskRun:
    """A run record whose attempt number `attempts` just ended (the engine counts it up on dispatch)."""
    return TaskRun(7, "work-0", "work", "flow-1", attempts=attempts, worker=worker)


def work(x=None):
    return x


PLAIN = task(work)
RETRIES_2 = task(work, retries=2, retry_delay_seconds=[1, 5])


@pytest.mark.parametrize("status", [Status.LOST, Status.DEFERRED, Status.SPENT])
def test_a_run_that_did_not_run_is_put_back_whatever_its_retries(status):
    assert decide(PLAIN, run_after(1), status) == PutBack()
    assert decide(RETRIES_2, run_after(3), status) == PutBack()


def test_a_completed_attempt_finishes_with_its_value_and_releases_downstream():
    decision = decide(PLAIN, run_after(1), Status.COMPLETED, value=[1, 2])
    assert isinstance(decision, Finish)
    assert decision.state.type is StateType.COMPLETED and decision.state.data == [1, 2]
    assert decision.ok


def test_a_cancelled_attempt_finishes_cancelled_without_a_retry():
    decision = decide(RETRIES_2, run_after(1), Status.CANCELLED)
    assert isinstance(decision, Finish) and decision.state.is_cancelled() and not decision.ok


def test_a_failure_is_retried_with_the_delay_of_its_attempt_then_finishes_failed():
    error = ValueError("boom")
    first = decide(RETRIES_2, run_after(1), Status.FAILED, error=error)
    second = decide(RETRIES_2, run_after(2), Status.FAILED, error=error)
    last = decide(RETRIES_2, run_after(3), Status.FAILED, error=error)
    assert isinstance(first, Retry) and isinstance(second, Retry)
    assert (first.delay, second.delay) == (1.0, 5.0)
    assert first.reason == "ValueError: boom"
    assert first.waiting.name == "AwaitingRetry" and first.waiting.message == "Retry 1 of 2 in 1.0 s"
    assert isinstance(last, Finish) and last.state.is_failed() and last.state.data is error and not last.ok


def test_a_crash_is_charged_three_times_in_a_row_then_the_run_is_crashed():
    many = task(work, retries=10)
    decisions = [decide(many, run_after(n), Status.CRASHED, error_text="worker died: SIGKILL", crashes=n)
                 for n in range(1, MAX_CRASHES + 1)]
    assert [type(d) for d in decisions] == [Retry] * (MAX_CRASHES - 1) + [Finish]
    final = decisions[-1]
    assert isinstance(final, Finish) and final.state.is_crashed()
    assert "SIGKILL" in final.state.message
    assert decisions[0].reason == "worker died: SIGKILL"


def test_a_crash_without_retries_left_is_crashed_at_once_and_names_the_run():
    decision = decide(PLAIN, run_after(1), Status.CRASHED, crashes=1)
    assert isinstance(decision, Finish) and decision.state.is_crashed()
    assert "work-0" in decision.state.message


def test_retry_condition_fn_decides_failures_but_not_crashes():
    asked = []

    def never(task_, run, state):
        asked.append(state.type)
        return False

    picky = task(work, retries=3, retry_condition_fn=never)
    failed = decide(picky, run_after(1), Status.FAILED, error=KeyError("k"))
    crashed = decide(picky, run_after(1), Status.CRASHED, crashes=1)
    assert isinstance(failed, Finish) and failed.state.is_failed()
    assert isinstance(crashed, Retry)
    assert asked == [StateType.FAILED]


def test_a_returned_failed_state_is_retried_and_other_returned_states_end_the_run():
    failed = ReturnedState("FAILED", "Failed", "bad input")
    cancelled = ReturnedState("CANCELLED", "Cancelled", "stopped")
    assert isinstance(decide(RETRIES_2, run_after(1), Status.FAILED, error=failed), Retry)
    last = decide(RETRIES_2, run_after(3), Status.FAILED, error=failed)
    assert isinstance(last, Finish) and last.state.is_failed() and last.state.message == "bad input"
    ended = decide(RETRIES_2, run_after(1), Status.FAILED, error=cancelled)
    assert isinstance(ended, Finish) and ended.state.is_cancelled() and ended.state.message == "stopped"


def test_a_timeout_ends_timed_out_and_says_when_its_worker_was_replaced():
    slow = task(work, timeout_seconds=0.5)
    replaced = decide(slow, run_after(1, worker=None), Status.TIMED_OUT, error=TimeoutError())
    stopped = decide(slow, run_after(1, worker=3), Status.TIMED_OUT, error=TimeoutError())
    for decision in (replaced, stopped):
        assert isinstance(decision, Finish) and decision.state.name == "TimedOut" and decision.state.is_failed()
        assert "exceeded timeout_seconds=0.5" in str(decision.state.data)
    assert "replaced" in str(replaced.state.data) and "replaced" not in str(stopped.state.data)


def test_a_timeout_with_retries_left_is_retried_like_a_failure():
    slow = task(work, timeout_seconds=0.5, retries=1)
    decision = decide(slow, run_after(1), Status.TIMED_OUT, error=TimeoutError())
    assert isinstance(decision, Retry) and "exceeded timeout_seconds=0.5" in decision.reason


def test_an_error_that_could_not_cross_back_fails_the_run_with_its_traceback_text():
    decision = decide(PLAIN, run_after(1), Status.FAILED, error=b"\x80unpicklable", error_text="Traceback: Boom")
    assert isinstance(decision, Finish) and isinstance(decision.state.data, RuntimeError)
    assert str(decision.state.data) == "Traceback: Boom"


def test_decisions_are_values_a_test_compares_with_one_equals():
    assert decide(PLAIN, run_after(1), Status.LOST) == decide(PLAIN, run_after(2), Status.DEFERRED)
    finish = decide(PLAIN, run_after(1), Status.COMPLETED, value=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finish.state = None  # type: ignore[misc,union-attr]


def test_retry_delay_seconds_as_a_list_gives_one_delay_per_retry_and_the_last_repeats():
    stepped = task(work, retries=4, retry_delay_seconds=[2, 4])
    assert [retry_delay(stepped, attempt) for attempt in (1, 2, 3, 4)] == [2.0, 4.0, 4.0, 4.0]


def test_an_error_in_retry_condition_fn_ends_the_retries_and_is_logged(caplog):
    def broken(task_, run, state):
        raise ZeroDivisionError("oops")

    picky = task(work, retries=3, retry_condition_fn=broken)
    with caplog.at_level("ERROR", logger="procflow"):
        decision = decide(picky, run_after(1), Status.FAILED, error=ValueError("v"))
    assert isinstance(decision, Finish) and decision.state.is_failed()
    assert "retry_condition_fn raised ZeroDivisionError: oops; not retrying" in caplog.text
