"""Generator tasks and flows: a run that lives while it yields, as in Prefect 3.8.

The run begins at the first `next()`, each value reaches the caller as the function yields it,
retries yield the values again, `timeout_seconds` counts the caller's time too, and a caller
that stops early ends the run Completed. Submitted, a generator task's values come back as a list.
"""

from __future__ import annotations

import asyncio
import time

import pydantic
import pytest

from procflow import flow, get_run_logger, runtime, task
from procflow.states import StateType


@task
def countdown(n, log):
    """Yields n..1, writing when each value was made; returns how many it made."""
    for value in range(n, 0, -1):
        log.append(("made", value, time.time()))
        yield value
    return n


def test_values_reach_the_caller_as_they_are_made_in_one_run_of_the_flow():
    log = []

    @flow
    def consume():
        got = []
        for value in countdown(3, log):
            log.append(("got", value, time.time()))
            got.append(value)
        return got

    assert consume() == [3, 2, 1]
    # each value was received before the next was made: streamed, not collected first
    assert [(kind, value) for kind, value, _ in log] == [("made", 3), ("got", 3), ("made", 2), ("got", 2),
                                                         ("made", 1), ("got", 1)]
    stamps = [stamp for _, _, stamp in log]
    assert stamps == sorted(stamps)
    (run,) = consume.last_run.task_runs
    assert (run.task_name, run.state.type, run.attempts) == ("countdown", StateType.COMPLETED, 1)
    assert run.state.result() == 3  # the return value is the run's result


def test_the_return_value_is_the_stop_iteration_value():
    values = countdown(2, [])
    assert (next(values), next(values)) == (2, 1)
    with pytest.raises(StopIteration) as stopped:
        next(values)
    assert stopped.value.value == 2


def test_a_generator_that_is_never_iterated_never_runs():
    log = []

    @flow
    def untouched():
        countdown(3, log)

    untouched()
    assert log == [] and untouched.last_run.task_runs == []  # no run was even made


def test_a_retry_runs_the_function_again_and_its_values_come_again():
    @task(retries=2)
    def flaky():
        yield 1
        yield 2
        raise ValueError("third value lost")

    got = []

    @flow
    def consume():
        for value in flaky():
            got.append(value)

    state = consume(return_state=True)
    assert got == [1, 2, 1, 2, 1, 2]
    assert state.is_failed()
    (run,) = consume.last_run.task_runs
    assert (run.attempts, run.state.type) == (3, StateType.FAILED)
    with pytest.raises(ValueError, match="third value lost"):
        run.state.result()


def test_the_timeout_counts_from_the_first_step_and_includes_the_callers_time():
    @task(timeout_seconds=1)
    def slow():
        yield 1
        time.sleep(30)  # interrupted: the run's deadline
        yield 2

    got = []
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        for value in slow():
            got.append(value)
    assert got == [1] and time.monotonic() - started < 15

    @task(timeout_seconds=1)
    def quick():
        yield 1
        yield 2

    lingering = quick()
    assert next(lingering) == 1
    time.sleep(1.5)  # the caller holds the run past its deadline
    with pytest.raises(TimeoutError):
        next(lingering)


def test_a_caller_that_stops_early_closes_the_function_and_the_run_completes():
    closed = []

    @task
    def endless():
        try:
            value = 0
            while True:
                value += 1
                yield value
        finally:
            closed.append(runtime.task_run.name)  # the run is current while it closes

    @flow
    def first_three():
        got = []
        for value in endless():
            got.append(value)
            if value == 3:
                break
        return got

    assert first_three() == [1, 2, 3]
    assert closed == ["endless-0"]
    (run,) = first_three.last_run.task_runs
    assert run.state.type is StateType.COMPLETED and run.end_time is not None


def test_the_run_is_current_in_each_step_not_between_them():
    @task
    def names():
        get_run_logger().info("making a value")
        yield runtime.task_run.name
        yield runtime.task_run.name

    @flow
    def consume():
        seen = []
        for name in names():
            seen.append((name, runtime.task_run.name))
        return seen

    assert consume() == [("names-0", None), ("names-0", None)]


def test_send_and_throw_reach_the_function():
    @task
    def echo():
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "a KeyError"

    talk = echo()
    assert next(talk) == "ready"
    assert talk.send("x") == "got x"
    assert talk.throw(KeyError("k")) == "got a KeyError"
    talk.close()


def test_hooks_run_once_at_the_end_of_the_run():
    seen = []

    @task(on_completion=[lambda task, run, state: seen.append(("completed", state.result()))],
          on_failure=[lambda task, run, state: seen.append(("failed", str(state.result(raise_on_failure=False))))])
    def two():
        yield 1
        yield 2
        return "done"

    assert list(two()) == [1, 2]
    assert seen == [("completed", "done")]


def test_return_state_is_refused_with_prefects_message():
    with pytest.raises(ValueError, match="The return_type for a generator task must be 'result'"):
        for _ in countdown(1, [], return_state=True):
            pass


def test_submitted_or_mapped_a_generator_task_gives_its_values_as_a_list(runner):
    @task
    def upto(n):
        yield from range(n)

    @task
    async def async_upto(n):
        for value in range(n):
            await asyncio.sleep(0)
            yield value

    @flow(task_runner=runner)
    def submitted():
        return (upto.submit(3).result(), [future.result() for future in upto.map([1, 2])],
                async_upto.submit(2).result())

    assert submitted() == ([0, 1, 2], [[0], [0, 1]], [0, 1])


def test_an_async_generator_task_streams_retries_and_times_out_in_the_callers_loop():
    log = []

    @task(retries=1)
    async def ticks():
        for value in (1, 2):
            log.append(("made", value))
            await asyncio.sleep(0)
            yield value
        if len(log) < 6:
            raise ValueError("once")

    @task(timeout_seconds=0.5)
    async def stalls():
        yield 1
        await asyncio.sleep(30)
        yield 2

    @flow
    async def consume():
        async for value in ticks():
            log.append(("got", value))
        got = []
        with pytest.raises(TimeoutError):
            async for value in stalls():
                got.append(value)
        return got

    assert asyncio.run(consume()) == [1]
    assert log == [("made", 1), ("got", 1), ("made", 2), ("got", 2)] * 2
    first, second = consume.last_run.task_runs
    assert (first.attempts, first.state.type) == (2, StateType.COMPLETED)
    assert second.state.name == "TimedOut"


def test_a_generator_flow_yields_as_it_goes_and_waits_for_its_task_runs_at_the_end():
    @task
    def square(x):
        time.sleep(0.2)
        return x * x

    @flow
    def squares(n: int):
        futures = []
        for x in range(n):
            futures.append(square.submit(x))
            yield runtime.flow_run.name
        return [future.result() for future in futures]

    names = squares(3)
    assert next(names) == squares.last_run.name  # the run is current in its steps
    assert runtime.flow_run.name is None  # and not in the caller between them
    assert list(names) == [squares.last_run.name] * 2
    assert squares.last_run.state.is_completed()
    assert squares.last_run.state.result() == [0, 1, 4]
    assert [run.state.type for run in squares.last_run.task_runs] == [StateType.COMPLETED] * 3


def test_a_generator_flow_retries_times_out_and_refuses_return_state():
    @flow(retries=2)
    def flaky():
        yield 1
        yield 2
        raise ValueError("no third")

    got = []
    with pytest.raises(ValueError, match="no third"):
        for value in flaky():
            got.append(value)
    assert got == [1, 2, 1, 2, 1, 2] and flaky.last_run.run_count == 3

    @flow(timeout_seconds=0.5)
    def slow():
        yield 1
        time.sleep(30)
        yield 2

    got = []
    with pytest.raises(TimeoutError):
        for value in slow():
            got.append(value)
    assert got == [1] and slow.last_run.state.name == "TimedOut"

    with pytest.raises(ValueError, match="The return_type for a generator flow must be 'result'"):
        next(flaky(return_state=True))


class Batch(pydantic.BaseModel):
    sizes: list[int]


def test_an_async_generator_flow_converts_a_dict_default_to_its_model():
    @flow
    async def batches(label: str, batch: Batch = {"sizes": [1, 2, 3]},  # noqa: B006 - converted to the model
                      limit: int = None):  # type: ignore[assignment]
        for size in batch.sizes:
            yield label, size, limit

    async def drain():
        return [value async for value in batches("b")]

    assert asyncio.run(drain()) == [("b", 1, None), ("b", 2, None), ("b", 3, None)]
    assert batches.last_run.state.is_completed()
    assert batches.last_run.parameters["batch"] == Batch(sizes=[1, 2, 3])


def test_prefects_engine_entry_points_give_the_generator_of_a_generator_task_or_flow():
    from procflow.flow_engine import run_flow, run_generator_flow_sync
    from procflow.task_engine import run_generator_task_sync, run_task

    @flow
    def upto(n: int):
        yield from range(n)

    assert list(run_task(countdown, parameters={"n": 2, "log": []})) == [2, 1]
    assert list(run_generator_task_sync(countdown, parameters={"n": 1, "log": []})) == [1]
    assert list(run_flow(upto, parameters={"n": 3})) == [0, 1, 2]
    assert list(run_generator_flow_sync(upto, parameters={"n": 1})) == [0]
    with pytest.raises(ValueError, match="generator task must be 'result'"):
        next(run_task(countdown, parameters={"n": 1, "log": []}, return_type="state"))
