"""Async flows and tasks, as Prefect 3 users write them, on every runner (issue 18)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from procflow import flow, task
from procflow.states import Completed, Failed, State, get_state_exception, raise_state_exception


@task
async def nap(label, seconds=0.3):
    """Returns (label, start, end), measured by the task itself."""
    start = time.time()
    await asyncio.sleep(seconds)
    return label, start, time.time()


@task
def square(x):
    return x * x


@task
async def async_square(x):
    await asyncio.sleep(0)
    return x * x


@task
async def async_boom(message="bad"):
    raise ValueError(message)


def overlapped(a, b):
    return a[1] < b[2] and b[1] < a[2]


def test_an_async_flow_call_is_a_coroutine_run_by_asyncio_run(runner):
    @flow(task_runner=runner)
    async def doubled(x):
        return 2 * await async_square(x)

    called = doubled(3)
    assert inspect.iscoroutine(called)
    assert asyncio.run(called) == 18
    assert doubled.isasync and doubled.last_run.state.is_completed()


def test_awaited_async_tasks_gathered_run_at_once(runner):
    @flow(task_runner=runner)
    async def both():
        return await asyncio.gather(nap("a"), nap("b"))

    a, b = asyncio.run(both())
    assert (a[0], b[0]) == ("a", "b")
    assert overlapped(a, b), f"gathered tasks ran one after the other: {a}, {b}"


def test_submit_and_map_from_an_async_flow_give_plain_futures(runner):
    @flow(task_runner=runner)
    async def mixed():
        mapped = square.map(range(4))
        async_mapped = async_square.map([5, 6])
        alone = async_square.submit(mapped[3])
        plain = [mapped.result(), async_mapped.result(), alone.result()]
        assert not any(inspect.isawaitable(item) for item in plain)
        return plain

    assert asyncio.run(mixed()) == [[0, 1, 4, 9], [25, 36], 81]


def test_state_result_is_awaitable_in_async_code_and_plain_in_sync_code(runner):
    @flow(task_runner=runner)
    async def in_async():
        state = square(4, return_state=True)
        submitted = square.submit(5, return_state=True)
        return await state.result(), await submitted.result(), state.result(_sync=True)

    @flow(task_runner=runner)
    def in_sync():
        return square(6, return_state=True).result()

    assert asyncio.run(in_async()) == (16, 25, 16)
    assert in_sync() == 36

    async def outside_any_run():  # code with a running loop and no run: async, as in Prefect
        state = await in_async(return_state=True)
        return await state.result()

    assert asyncio.run(outside_any_run()) == (16, 25, 16)
    assert Completed(3).result() == 3  # no loop, no run: plain


def test_state_exception_helpers_dispatch_too():
    async def check():
        with pytest.raises(ValueError, match="inner"):
            await raise_state_exception(Failed(data=ValueError("inner")))
        assert await raise_state_exception(Completed()) is None
        error = await get_state_exception(Failed(data=[Completed(), Failed(data=KeyError("k"))]))
        return error

    assert isinstance(asyncio.run(check()), KeyError)
    with pytest.raises(ValueError, match="inner"):
        raise_state_exception(Failed(data=ValueError("inner")))


def test_nested_flows_across_sync_and_async(runner):
    @flow
    async def async_child(x):
        return await async_square(x)

    @flow
    def sync_child(x):
        return square(x)

    @flow(task_runner=runner)
    async def async_parent():
        return await async_child(2), sync_child(3)

    @flow(task_runner=runner)
    def sync_parent():
        return asyncio.run(async_child(4))

    assert asyncio.run(async_parent()) == (4, 9)
    parent_run = async_parent.last_run
    assert {run.parent.name for run in (async_child.last_run, sync_child.last_run)} == {parent_run.name}
    assert sync_parent() == 16
    assert async_child.last_run.parent is sync_parent.last_run


def test_an_async_task_called_in_a_sync_flow_gives_a_coroutine(runner):
    @flow(task_runner=runner)
    def sync_flow():
        called = async_square(7)
        return inspect.iscoroutine(called), asyncio.run(called)

    assert sync_flow() == (True, 49)


def test_async_flow_retries_and_its_hooks(runner, tmp_path):
    attempts = tmp_path / "attempts"
    finished = []

    @flow(task_runner=runner, retries=2, on_completion=[lambda f, r, s: finished.append(s.name)])
    async def flaky():
        with attempts.open("a") as file:
            file.write("x")
        if len(attempts.read_text()) < 3:
            raise RuntimeError("not yet")
        return await async_square(3)

    assert asyncio.run(flaky()) == 9
    assert attempts.read_text() == "xxx"
    assert flaky.last_run.run_count == 3
    assert finished == ["Completed"]


def test_async_flow_timeout_cancels_its_body_and_fails(runner):
    failures = []

    @flow(task_runner=runner, timeout_seconds=0.5, on_failure=[lambda f, r, s: failures.append(s.name)])
    async def too_slow():
        await asyncio.sleep(30)

    started = time.monotonic()
    state = asyncio.run(too_slow(return_state=True))
    assert time.monotonic() - started < 10
    assert state.is_failed() and state.name == "TimedOut"
    assert "exceeded timeout of 0.5 second" in state.message
    assert failures == ["TimedOut"]


def test_awaited_task_retries_and_times_out_in_the_loop(runner, tmp_path):
    tries = tmp_path / "tries"

    @task(retries=2)
    async def flaky_task():
        with tries.open("a") as file:
            file.write("x")
        if len(tries.read_text()) < 2:
            raise RuntimeError("once")
        return "ok"

    @task(timeout_seconds=0.3)
    async def hangs():
        await asyncio.sleep(30)

    @flow(task_runner=runner)
    async def body():
        return await flaky_task(), await hangs(return_state=True)

    started = time.monotonic()
    value, timed_out = asyncio.run(body())
    assert time.monotonic() - started < 10
    assert value == "ok" and tries.read_text() == "xx"
    assert timed_out.is_failed() and timed_out.name == "TimedOut"


def test_async_flow_final_state_follows_the_returned_futures(runner):
    @flow(task_runner=runner)
    async def returns_futures():
        return square.submit(2), async_boom.submit("no")

    state = asyncio.run(returns_futures(return_state=True))
    assert state.is_failed() and state.message == "1/2 states failed."
    inner = state.result(raise_on_failure=False)
    assert [item.type.value for item in inner] == ["COMPLETED", "FAILED"]
    with pytest.raises(ValueError, match="no"):
        asyncio.run(returns_futures())


def test_prints_of_gathered_tasks_go_to_their_own_runs(log_lines):
    @task(log_prints=True)
    async def talk(label):
        for step in range(3):
            print(f"{label} says {step}")
            await asyncio.sleep(0.01)

    @flow
    async def chat():
        await asyncio.gather(talk("a"), talk("b"))

    asyncio.run(chat())
    said = [line for line in log_lines if " says " in line]
    assert len(said) == 6
    for line in said:
        run_name, text = line.split(" - ", 1)
        label = "a" if "talk-0" in run_name else "b"
        assert text.startswith(f"{label} says"), line


def test_an_async_flow_may_be_awaited_from_another_coroutine(runner):
    @flow(task_runner=runner)
    async def one(x):
        return await async_square(x)

    async def caller():
        return await asyncio.gather(one(2), one(3))

    assert asyncio.run(caller()) == [4, 9]
    assert isinstance(asyncio.run(one(5, return_state=True)), State)


def test_ctrl_c_during_an_async_flow_cancels_its_runs_and_leaves_nothing(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    script = tmp_path / "async_sleepers.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, os, pathlib, time
        from procflow import flow, task
        from procflow.task_runners import ProcessPoolTaskRunner

        @task
        def sleeper(i):
            pathlib.Path({str(started)!r}, str(os.getpid()) + "-" + str(i)).touch()
            time.sleep(60)

        @task
        async def waiter():
            await asyncio.sleep(60)

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        async def main():
            futures = sleeper.map(range(2))
            await asyncio.gather(waiter(), waiter())
            return futures

        asyncio.run(main())
    """))
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 60
    while len(os.listdir(started)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert len(os.listdir(started)) == 2, "the tasks did not start"
    worker_pids = [int(name.split("-")[0]) for name in os.listdir(started)]
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert process.returncode in (130, -signal.SIGINT), stderr
    assert "Task was destroyed but it is pending" not in stderr
    assert "was never awaited" not in stderr
    assert "Interrupted: " in stderr
    time.sleep(0.5)
    assert not [pid for pid in worker_pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_async_hooks_run_for_async_flows_and_a_returned_cancelling_state_calls_on_cancellation():
    from procflow.states import StateType

    calls = []

    async def async_hook(flow_object, flow_run, state):
        await asyncio.sleep(0)
        calls.append(("async", state.name))

    def sync_hook(flow_object, flow_run, state):
        calls.append(("sync", state.name))

    @flow(on_completion=[async_hook, sync_hook])
    async def completes():
        return 1

    @flow(on_cancellation=[sync_hook, async_hook])
    def cancelling():
        return State(type=StateType.CANCELLING)

    assert asyncio.run(completes()) == 1
    assert cancelling(return_state=True).type is StateType.CANCELLING
    assert calls == [("async", "Completed"), ("sync", "Completed"), ("sync", "Cancelling"), ("async", "Cancelling")]


def test_an_awaited_task_raising_system_exit_fails_alone_as_a_submitted_one_does():
    @task
    async def exits():
        raise SystemExit(3)

    @flow
    async def body():
        state = await exits(return_state=True)
        return state.is_failed(), type(state.result(raise_on_failure=False, _sync=True)).__name__, "went on"

    assert asyncio.run(body()) == (True, "SystemExit", "went on")
