"""Runs outside flows, futures across flow runs, and flow-level options."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import values

from procflow import flow, task
from procflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


@task
def double(x):
    return 2 * x


@task
def big(n):
    return np.full(n, 2.0)


@task
def total(array):
    return float(array.sum())


def test_submit_and_map_outside_a_flow_run_on_a_detached_process_runner():
    script = textwrap.dedent("""
        import os
        from procflow import task

        @task
        def where(x):
            return x * 10, os.getpid()

        single = where.submit(1)
        many = where.map([2, 3])
        print(single.result()[0], [f.result()[0] for f in many], single.result()[1] != os.getpid())
        print(where.fn(4)[0], where(5)[0], where(6)[1] == os.getpid())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    detached, direct = done.stdout.splitlines()
    assert detached == "10 [20, 30] True", "ran in worker processes"
    assert direct == "40 50 True", "a direct call outside a flow calls the function here"


def test_a_future_from_a_finished_flow_run_passes_its_result():
    kept = []

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def first():
        kept.append(big.submit(2 * 1024 * 1024))  # 16 MB: lives in shared memory during the flow
        kept.append(double.submit(21))

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def second():
        return total.submit(kept[0]), double.submit(kept[1])

    first()
    assert values(second()) == (2.0 * 2 * 1024 * 1024, 84)


def test_flow_timeout_fails_the_flow_and_cancels_what_is_pending():
    @task
    def slow():
        time.sleep(0.3)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1), timeout_seconds=0.5)
    def too_long():
        for _ in range(20):
            slow.submit()
        time.sleep(5)

    started = time.monotonic()
    state = too_long(return_state=True)
    assert time.monotonic() - started < 4
    assert state.is_failed() and state.name == "TimedOut"
    assert state.message == "Flow run exceeded timeout of 0.5 second(s)"  # Prefect's words
    assert any(run.state.is_cancelled() for run in too_long.last_run.task_runs)
    with pytest.raises(TimeoutError, match="exceeded timeout of 0.5 second"):
        too_long()


@task
def sleeps(seconds):
    time.sleep(seconds)
    return np.ones(1 << 18)  # a result for shared memory, were it to finish


def test_a_flow_timeout_covers_the_runs_the_flow_function_left_running():
    """The function returns at once; its runs would take 10 s more. Prefect's limit bounds both."""
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2), timeout_seconds=1)
    def returns_at_once():
        return sleeps.map([10] * 4)

    started = time.monotonic()
    state = returns_at_once(return_state=True)
    assert time.monotonic() - started < 6
    assert state.name == "TimedOut" and state.message == "Flow run exceeded timeout of 1 second(s)"
    assert {run.state.name for run in returns_at_once.last_run.task_runs} == {"Cancelled"}


@task
def naps(seconds):
    time.sleep(seconds)
    return seconds


def test_a_nested_flows_timeout_cancels_its_own_runs_and_leaves_its_parents_alone():
    """Both run on the parent's engine; the child's limit used to cancel every run there."""
    @flow(timeout_seconds=0.5)
    def child():
        naps.submit(1.5)  # running at the limit: it finishes
        return [naps.submit(0.2) for _ in range(6)]  # still waiting for a thread at the limit: cancelled

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent(catch):
        own = naps.submit(1.0)
        try:
            child()
        except TimeoutError:
            if not catch:
                raise
        return own

    assert values(parent(True)) == 1.0
    child_states = [run.state.name for run in child.last_run.task_runs]
    assert child.last_run.state.name == "TimedOut"
    assert child_states[0] == "Completed" and "Cancelled" in child_states[1:]
    state = parent(False, return_state=True)  # the child's error, uncaught: the parent fails, its run is kept
    assert state.is_failed() and state.name == "Failed"
    assert parent.last_run.task_runs[0].state.is_completed()


def test_a_flow_run_from_another_thread_times_out_with_the_same_message():
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1), timeout_seconds=0.3)
    def too_long():
        for _ in range(200):
            time.sleep(0.02)  # a non-main thread's deadline lands between bytecodes

    states = []
    thread = threading.Thread(target=lambda: states.append(too_long(return_state=True)))
    thread.start()
    thread.join(timeout=30)
    assert states and states[0].name == "TimedOut"
    assert states[0].message == "Flow run exceeded timeout of 0.3 second(s)"


def test_a_task_called_directly_times_out_like_a_submitted_one():
    """In the main thread its deadline is an alarm, as Prefect's: a blocking sleep is cut short."""
    @task(timeout_seconds=0.3)
    def sleepy():
        time.sleep(60)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def calls_it():
        return sleepy(return_state=True)

    started = time.monotonic()
    calls_it(return_state=True)
    assert time.monotonic() - started < 30, "the sleep ran to its end"
    state = calls_it.last_run.task_runs[0].state
    assert state.name == "TimedOut" and state.message == "Task run exceeded timeout of 0.3 second(s)"
    with pytest.raises(TimeoutError, match=r"Task run 'sleepy-0' exceeded timeout_seconds=0.3"):
        state.result()


def test_flow_retries_rerun_the_whole_flow(tmp_path):
    marker = tmp_path / "flow-attempts"

    @flow(task_runner=ThreadPoolTaskRunner, retries=1)
    def flaky():
        with open(marker, "a") as out:
            out.write("x")
        if len(marker.read_text()) < 2:
            raise RuntimeError("first attempt fails")
        return double.submit(4)

    assert values(flaky()) == 8
    assert marker.read_text() == "xx"


@task
def fails():
    raise ValueError("earlier flow run")


def test_a_failed_future_of_an_earlier_flow_run_blocks_its_dependents_transitively():
    kept = []

    @flow(task_runner=ThreadPoolTaskRunner)
    def earlier():
        kept.append(fails.submit())

    @flow(task_runner=ThreadPoolTaskRunner)
    def later():
        child = double.submit(kept[0])
        return double.submit(child)

    earlier(return_state=True)
    state = later(return_state=True)
    runs = later.last_run.task_runs
    assert [run.state.name for run in runs] == ["NotReady", "NotReady"]
    assert runs[1].state.message == "Upstream task run 'double-0' did not reach a 'COMPLETED' state."
    assert state.is_failed()


def test_an_engine_error_no_run_can_be_charged_with_fails_the_pending_runs_instead_of_hanging(monkeypatch):
    """Issue 19: an exception in the engine's dispatch (here: the runner's capacity) was logged
    and the flow then waited for ever. Now the runs fail, naming the cause, and the flow ends."""
    from procflow.runners.threads import ThreadSession
    from procflow.task_runners import ThreadPoolTaskRunner

    def broken(self):
        raise RuntimeError("injected capacity failure")

    monkeypatch.setattr(ThreadSession, "capacity", broken)

    @task
    def one():
        return 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def stuck():
        return [one.submit(), one.submit()]

    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(state=stuck(return_state=True)))
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the flow hung"
    state = outcome["state"]
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="procflow's engine failed while task run 'one-0' was pending: "
                                           "RuntimeError: injected capacity failure"):
        state.result()


def test_a_future_of_another_flow_run_still_running_is_waited_for_and_passes_its_result():
    """The future is taken while its run still runs: its end must release the run here. It
    failed every pending run of the flow ('run 1 is not running here') before the fix."""
    from procflow.current import current_flow

    release = threading.Event()
    held: dict = {}

    @task
    def gated(x):
        assert release.wait(60)
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def producer():
        held["future"] = gated.submit(21)
        return held["future"]

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def consumer():
        future = double.submit(held["future"])
        lifecycle = current_flow.get().engine.lifecycle
        deadline = time.monotonic() + 30
        while held["future"].task_run.id not in lifecycle.records:  # taken by this engine while it runs
            assert time.monotonic() < deadline
            time.sleep(0.001)
        release.set()
        return future

    thread = threading.Thread(target=producer)
    thread.start()
    while "future" not in held:
        time.sleep(0.001)
    state = consumer(return_state=True)
    thread.join(30)
    assert state.is_completed(), state
    assert values(state.result()) == 42
