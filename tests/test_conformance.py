"""One behaviour suite for every runner: same results, same states, same upstream records."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import os
import re
import threading
import time
from pathlib import Path
from dataclasses import dataclass

import pytest
from conftest import ValueFlow

import procflow
from procflow import (
    FutureList,
    MissingContextError,
    StateType,
    UpstreamTaskError,
    allow_failure,
    as_completed,
    flow,
    get_run_logger,
    quote,
    task,
    unmapped,
    wait,
)
from procflow.attempts import retry_delay
from procflow.context import get_run_context
from procflow.exceptions import FailedRun, ParameterBindError, ReservedArgumentError
from procflow.states import Completed, Failed
from procflow.runtime import flow_run, task_run
from procflow.exceptions import MappingLengthMismatch, MappingMissingIterable


@task
def add(x, y=0):
    return x + y


@task
def stamp(label):
    """Returns when it ran, measured by the task itself."""
    start = time.time()
    time.sleep(0.05)
    return label, start, time.time()


@task
def boom(message="bad"):
    raise ValueError(message)


@task
def identity(x):
    return x


@task
def total(items):
    return sum(items)


@dataclass
class Pair:
    left: object
    right: object


@task
def pair_sum(pair, mapping, group):
    return pair.left + pair.right + sum(mapping.values()) + sum(mapping.keys()) + sum(group)


def run_flow(runner, fn, *args, **kwargs):
    return ValueFlow(flow(task_runner=runner)(fn))(*args, **kwargs)


def test_submit_and_futures_as_arguments(runner):
    def body():
        a = add.submit(1, 2)
        b = add.submit(a, 10)
        return add.submit(a, b).result()

    assert run_flow(runner, body) == 16


def test_futures_nested_anywhere_in_arguments(runner):
    def body():
        a, b, c = identity.submit(1), identity.submit(2), identity.submit(3)
        return pair_sum.submit(Pair(a, b), {c: a, 5: b}, {c, 7})

    assert run_flow(runner, body) == 1 + 2 + (1 + 2) + (3 + 5) + (3 + 7)
    record = [r for r in body_runs() if r.task_name == "pair_sum"][0]
    assert sorted(kind for _, kind in record.upstream) == ["data"] * 3


def body_runs():
    from procflow import last_flow_run

    return last_flow_run().task_runs


def test_map_zips_iterables_and_passes_scalars_and_unmapped_whole(runner):
    def body():
        return add.map([1, 2, 3], unmapped(10)), add.map(range(3), y=[5, 5, 5]), total.map(unmapped([1, 2]), )

    with pytest.raises(MappingMissingIterable):
        run_flow(runner, body)

    def body2():
        first = add.map([1, 2, 3], unmapped(10))
        second = add.map(range(3), y=[5, 5, 5])
        third = add.map([1, 2], 100)  # a scalar goes whole to every child
        return first.result(), second.result(), third.result()

    assert run_flow(runner, body2) == ([11, 12, 13], [5, 6, 7], [101, 102])


@task
def spread(first, *rest, scale=1, **options):
    return first, rest, scale, options


def test_map_counts_each_star_argument_and_each_extra_keyword_as_a_parameter(runner):
    def body():
        return spread.map([1, 2], [3, 4], "whole", scale=unmapped([9]), tag=["a", "b"]).result()

    assert run_flow(runner, body) == [(1, (3, "whole"), [9], {"tag": "a"}), (2, (4, "whole"), [9], {"tag": "b"})]

    def mismatched():
        return spread.map([1, 2], [3, 4, 5])

    with pytest.raises(MappingLengthMismatch, match=r"'rest\[0\]': 3"):
        run_flow(runner, mismatched)


@task
def fails_on(x, bad):
    if x == bad:
        raise ValueError(f"bad {x}")
    return x


def test_map_over_an_annotated_iterable_wraps_each_item_again(runner):
    """Prefect's `t.map(allow_failure(futures))`: every child runs, a failed item passes its exception."""
    def body():
        firsts = fails_on.map([0, 1, 2], 1)
        tolerant = identity.map(allow_failure(firsts))
        quoted = pair.map(quote([[1], [2]]), allow_failure(unmapped(firsts[1])))
        return [repr(value) for value in tolerant.result()], [repr(value) for value in quoted.result()]

    tolerant, quoted = run_flow(runner, body, return_state=True).result()
    assert tolerant == ["0", "ValueError('bad 1')", "2"]
    assert quoted == ["([1], ValueError('bad 1'))", "([2], ValueError('bad 1'))"]


def test_map_over_futures_and_future_lists(runner):
    def body():
        numbers = identity.submit([1, 2, 3])
        doubled = add.map(numbers, numbers)  # a future whose result is iterable
        again = add.map(doubled, 1)  # a FutureList: each item is that child's own upstream
        return again

    assert run_flow(runner, body) == [3, 5, 7]
    runs = body_runs()
    doubled_ids = [r.id for r in runs if r.task_name == "add"][:3]
    again = [r for r in runs if r.task_name == "add"][3:]
    assert [r.upstream for r in again] == [[(i, "data")] for i in doubled_ids]


def test_map_wait_for_goes_to_every_child_and_items_only_to_their_own(runner):
    def body():
        gate = stamp.submit("gate")
        items = [identity.submit(i) for i in range(3)]
        mapped = add.map(items, 1, wait_for=[gate])
        return gate, mapped

    gate, mapped = run_flow(runner, body)
    runs = body_runs()
    gate_id = runs[0].id
    item_ids = [r.id for r in runs[1:4]]
    children = runs[4:]
    assert mapped == [1, 2, 3]
    for child, item_id in zip(children, item_ids, strict=True):
        assert sorted(child.upstream) == sorted([(item_id, "data"), (gate_id, "wait_for")])
        assert child.start_time >= gate[2] - 1e-3  # the gate's own end time, written by the task


def test_wait_for_orders_runs_without_data(runner):
    def body():
        first = stamp.submit("first")
        second = stamp.submit("second", wait_for=[first])
        third = stamp.submit("third", wait_for=[second])
        return [first, second, third]

    results = run_flow(runner, body)
    for before, after in itertools.pairwise(results):
        assert after[1] >= before[2] - 1e-3, f"{after[0]} started before {before[0]} ended"


def test_failed_upstream_makes_downstream_not_ready_and_the_flow_raises(runner):
    def body():
        bad = boom.submit()
        child = add.submit(bad, 1)
        add.submit(child, 1)
        add.submit(1, 1)
        return None

    state = run_flow(runner, body, return_state=True)
    assert state.is_failed()
    assert state.message == "3/4 states failed."
    by_name = {r.name: r.state for r in body_runs()}
    assert by_name["boom-0"].is_failed()
    assert by_name["add-0"].name == "NotReady"
    assert by_name["add-0"].type is StateType.PENDING
    assert by_name["add-0"].message == "Upstream task run 'boom-0' did not reach a 'COMPLETED' state."
    assert by_name["add-1"].message == "Upstream task run 'add-0' did not reach a 'COMPLETED' state."
    assert by_name["add-2"].is_completed()
    with pytest.raises(ValueError, match="bad"):
        run_flow(runner, body)


def test_flow_raises_upstream_task_error_chained_to_the_cause(runner):
    def body():
        child = add.submit(boom.submit("root cause"), 1)
        return child

    with pytest.raises(UpstreamTaskError, match="boom-0") as raised:
        run_flow(runner, body)
    assert isinstance(raised.value.__cause__, ValueError)
    assert "root cause" in str(raised.value)


def test_a_not_ready_result_is_an_unfinished_run_as_prefect_code_catches_it(runner):
    from procflow.exceptions import UnfinishedRun

    def body():
        child = add.submit(boom.submit("root cause"), 1)
        try:
            child.result()
        except UnfinishedRun as error:
            return type(error).__name__, child.state.name

    assert run_flow(runner, body) == ("UpstreamTaskError", "NotReady")


@task
def late_boom(seconds, message):
    time.sleep(seconds)
    raise ValueError(message)


def test_not_ready_names_the_first_failed_upstream_in_argument_order_whichever_fails_first(runner):
    """As Prefect resolves a run's inputs one after another: arguments, then wait_for."""
    def body():
        late = late_boom.submit(0.5, "late")
        early = boom.submit("early")
        by_arguments = add.submit(late, early)
        by_wait_for = add.submit(1, wait_for=[late, early])
        after = identity.submit(allow_failure(by_arguments))
        return by_arguments, by_wait_for, after

    state = run_flow(runner, body, return_state=True)
    by_name = {r.name: r.state for r in body_runs()}
    for name in ("add-0", "add-1"):
        assert by_name[name].name == "NotReady"
        assert by_name[name].message == "Upstream task run 'late_boom-0' did not reach a 'COMPLETED' state."
    assert by_name["identity-0"].is_completed()
    assert state.message == "2/3 states failed."


def test_allow_failure_runs_downstream_with_the_exception(runner):
    def body():
        bad = boom.submit("tolerated")
        return identity.submit(allow_failure(bad))

    state = run_flow(runner, body, return_state=True)
    assert state.is_completed()
    value = state.result().result()  # the returned future's State, then its value
    assert isinstance(value, ValueError) and str(value) == "tolerated"


def test_allow_failure_covers_the_futures_nested_inside_it(runner):
    """As Prefect: `allow_failure([bad, 1])` passes the exception in the list. The thread and
    sequential runners once failed such a run with the upstream's error."""
    def body():
        bad = boom.submit("nested")
        return identity.submit(allow_failure({"items": [bad, 1]}))

    value = run_flow(runner, body)
    assert list(value) == ["items"]
    error, one = value["items"]
    assert isinstance(error, ValueError) and str(error) == "nested" and one == 1


def test_quote_passes_value_without_looking_inside(runner):
    def body():
        return identity.submit(quote([1, 2, 3])).result()

    assert run_flow(runner, body) == [1, 2, 3]


def test_opaque_gives_a_futures_result_without_looking_inside_it(runner):
    from procflow.utilities.annotations import opaque

    def body():
        nested = identity.submit({"data": "value", "state": Completed(data="inner")})
        through = identity.submit(opaque(nested))  # a dependency: waits, gets its result whole
        plain = identity.submit(opaque([1, 2, 3]))
        return through.result(), plain.result(), list(through.task_run.upstream), nested.task_run.id

    returned, plain, upstream, nested_id = run_flow(runner, body, return_state=True).result()  # States as returned
    assert upstream == [(nested_id, "data")]
    assert returned["data"] == "value" and type(returned["state"]).__name__ == "State"
    assert returned["state"].result() == "inner"
    assert plain == [1, 2, 3]


def test_returned_value_other_than_futures_completes_even_if_a_task_failed(runner):
    def body():
        boom.submit()
        return 42

    state = run_flow(runner, body, return_state=True)
    assert state.is_completed() and state.result() == 42


def test_returned_futures_are_the_ones_that_count(runner):
    def body():
        boom.submit()
        return [add.submit(1, 1), add.submit(2, 2)]

    state = run_flow(runner, body, return_state=True)
    assert repr(state) == "Completed('All states completed.')"
    returned = state.result()
    assert [type(item).__name__ for item in returned] == ["State", "State"], "Prefect: the futures' States"
    assert [item.result() for item in returned] == [2, 4]


def test_a_return_value_mixing_states_and_data_is_data_and_completes(runner):
    """SPEC §1: `(None, failed_state)` or a nested structure is data: `Completed()`."""
    def body():
        return None, boom(return_state=True), [add.submit(1, 1), {"k": add.submit(2, 2)}]

    state = run_flow(runner, body, return_state=True)
    assert repr(state) == "Completed()"
    none, failed, (two, four) = state.result()
    assert none is None and failed.is_failed()
    assert two.result() == 2 and four["k"].result() == 4


@task(retries=2)
def declares(ok):
    return Completed(5, message="fine") if ok else Failed(message="bad data")


def test_a_state_a_task_returns_is_the_state_its_run_ends_in(runner, log_lines):
    """Prefect's custom states: `return Failed(message=...)` fails the run once its retries are
    spent, as Prefect 3 retries it (no exception line: nothing raised); `return Completed(data)`
    completes it with that result."""
    def body():
        refused, accepted = declares.submit(False), declares.submit(True)
        downstream = identity.submit(refused)
        refused.wait(), accepted.wait(), downstream.wait()
        called = declares(False, return_state=True)
        return (repr(refused.state), refused.task_run.attempts, repr(refused.result(raise_on_failure=False)),
                accepted.result(), downstream.state.name, repr(called))

    assert run_flow(runner, body) == ("Failed('bad data')", 3, "FailedRun('bad data')", 5, "NotReady",
                                      "Failed('bad data')")
    assert not any("Task run failed with exception" in line for line in log_lines)
    assert sum("Received non-final state 'AwaitingRetry'" in line for line in log_lines) == 4  # 2 runs x 2 retries


def test_a_state_the_flow_makes_itself_is_its_final_state():
    """As Prefect: `return Failed(message=...)` fails the flow with that message (FailedRun)."""
    refused = flow(lambda: Failed(message="flow says no"))
    fine = flow(lambda: Completed(7, message="all good"))

    state = refused(return_state=True)
    assert (state.name, state.message) == ("Failed", "flow says no")
    with pytest.raises(FailedRun, match="flow says no"):
        refused()
    assert repr(fine(return_state=True)) == "Completed('all good')" and fine() == 7


def test_flow_function_exception_is_the_flow_state(runner):
    def body():
        add.submit(1, 1)
        raise KeyError("inside the flow")

    state = run_flow(runner, body, return_state=True)
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), KeyError)
    assert all(r.state.is_completed() for r in body_runs()), "submitted runs still finish"


def test_retries_rerun_failed_attempts(runner, tmp_path):
    marker = tmp_path / "attempts"

    @task(retries=2, retry_delay_seconds=[0.01, 0.02])
    def flaky(path):
        with open(path, "a") as f:
            f.write("x")
        if len(Path(path).read_text()) < 3:
            raise RuntimeError("not yet")
        return "ok"

    def body():
        return flaky.submit(str(marker))

    assert run_flow(runner, body) == "ok"
    assert body_runs()[0].attempts == 3


def test_direct_call_runs_in_flow_process_after_upstreams(runner):
    def body():
        upstream = add.submit(2, 3)
        value = add(upstream, 1)
        state = boom(return_state=True)
        return value, state.is_failed(), os.getpid()

    value, failed, pid = run_flow(runner, body)
    assert (value, failed, pid) == (6, True, os.getpid())
    assert [r.name for r in body_runs()] == ["add-0", "add-1", "boom-0"]
    assert body_runs()[1].upstream == [(body_runs()[0].id, "data")]


def test_nested_flow_runs_as_child_flow_run(runner):
    @flow
    def child(n):
        return add.submit(n, 1)

    def body():
        return child(1).result() + child(2).result()  # a flow returns its future's State

    assert run_flow(runner, body) == 5
    parent_run = body_runs_flow()
    assert child.last_run.parent is parent_run
    assert repr(child.last_run.state) == "Completed('All states completed.')"
    assert [r.name for r in child.last_run.task_runs] == ["add-0"]
    assert parent_run.task_runs == []  # the child's runs belong to the child flow run


def body_runs_flow():
    from procflow import last_flow_run

    return last_flow_run()


def test_task_run_name_template_and_counters(runner):
    named = add.with_options(task_run_name="add-{x}-and-{y}")

    def body():
        named.submit(1, 2)
        add.submit(1)
        add.submit(2)
        return None

    run_flow(runner, body)
    assert [r.name for r in body_runs()] == ["add-1-and-2", "add-0", "add-1"]


@task(task_run_name="pair-{x}-and-{y}")
def pair(x, y):
    return x, y


def test_a_run_name_template_shows_the_results_of_the_futures_it_names(runner):
    """As Prefect, which names the run once its inputs are resolved: 'pair-4-and-[4, 1]'."""
    named = pair

    def body():
        four = add.submit(2, 2)
        named.submit(four, [four, 1])
        named(four, 1)  # a direct call
        named.map(add.map([1, 2], 1), 0)  # items that are futures
        return None

    run_flow(runner, body)
    assert sorted(r.name for r in body_runs() if r.task_name == "pair") == [
        "pair-2-and-0", "pair-3-and-0", "pair-4-and-1", "pair-4-and-[4, 1]"]


def name_from_runtime():
    parameters = task_run.parameters
    return f"{flow_run.flow_name}-{task_run.task_name}-with-{parameters['name']}-and-{parameters['limit']}"


@task(task_run_name=name_from_runtime)
def report_run(name, limit=3):
    return task_run.name, task_run.task_name, task_run.parameters, flow_run.name


def test_runtime_describes_the_run_in_progress_as_prefect_runtime_does(runner):
    """Prefect's documented way to name runs with functions: `procflow.runtime` (was `prefect.runtime`)."""
    def body(day):
        submitted = report_run.submit("x")
        called = report_run("y", limit=5)
        return flow_run.name, flow_run.flow_name, flow_run.parameters, submitted.result(), called

    named = flow(task_runner=runner, name="my-flow",
                 flow_run_name=lambda: f"{flow_run.flow_name}-on-{flow_run.parameters['day']}")(body)
    assert named("monday") == (
        "my-flow-on-monday", "my-flow", {"day": "monday"},
        ("my-flow-report_run-with-x-and-3", "report_run", {"name": "x", "limit": 3}, "my-flow-on-monday"),
        ("my-flow-report_run-with-y-and-5", "report_run", {"name": "y", "limit": 5}, "my-flow-on-monday"))
    assert (task_run.name, task_run.id, flow_run.name, task_run.parameters, flow_run.parameters) == (
        None, None, None, {}, {})


@task(retries=3)
def fails_until_third_attempt():
    """Prefect's documented retry idiom: the task reads which attempt it is."""
    if task_run.run_count < 3:
        raise RuntimeError(f"attempt {task_run.run_count}")
    return task_run.run_count, flow_run.run_count


def test_run_count_is_the_attempt_of_the_task_run_and_of_the_flow_run(runner):
    tries = {"flow": 0}

    def body():
        tries["flow"] += 1
        retried = fails_until_third_attempt.submit().result(), fails_until_third_attempt()
        if tries["flow"] == 1:
            raise RuntimeError("the flow's first attempt fails")
        return retried, flow_run.run_count

    retried_flow = flow(task_runner=runner, retries=1)(body)
    assert retried_flow() == (((3, 2), (3, 2)), 2)
    assert [run.run_count for run in retried_flow.last_run.task_runs] == [3, 3, 3, 3]
    assert (task_run.run_count, flow_run.run_count) == (0, 0)  # outside any run, as in Prefect


@task
def context_seen(x):
    context = get_run_context()
    return type(context).__name__, context.task_run.name, context.parameters


class Scaler:
    """Tasks and a flow defined as methods, as Prefect allows."""

    def __init__(self, factor):
        self.factor = factor

    @task
    def scale(self, x):
        return self.factor * x

    @flow
    def scale_all(self, xs):
        first = self.scale.submit(3).result()
        self.factor += 1  # each run gets the instance as of its call
        return self.scale(2), first, self.scale.map(xs).result()


def test_tasks_and_flows_work_as_methods_of_an_instance(runner):
    scaler = Scaler(10)
    on_runner = Scaler.scale_all.with_options(task_runner=runner)
    assert on_runner.__get__(scaler, Scaler)([1, 2]) == (22, 30, [11, 22])  # what `scaler.scale_all` does
    assert [run.name for run in body_runs()] == ["scale-0", "scale-1", "scale-2", "scale-3"]
    assert on_runner.last_run.parameters["xs"] == [1, 2]


def test_a_flow_method_called_on_an_instance():
    assert Scaler(2).scale_all([5]) == (6, 6, [15])
    assert Scaler.scale_all.last_run.name == procflow.last_flow_run().name


def test_tags_blocks_add_their_tags_to_the_runs_made_inside(runner):
    """Prefect's `with tags(...)`: the runs created inside carry them, with the task's own."""
    tagged = add.with_options(tags=["db"])

    def body():
        with procflow.tags("nightly"):
            tagged.submit(1)
            with procflow.tags("extra"):
                tagged(2)
        tagged.submit(3)

    run_flow(runner, body)
    assert [sorted(run.tags) for run in body_runs()] == [["db", "nightly"], ["db", "extra", "nightly"], ["db"]]


def test_get_run_context_is_the_task_run_else_the_flow_run(runner):
    def body():
        context = get_run_context()
        return type(context).__name__, context.flow_run.name, context_seen.submit(3).result(), context_seen(4)

    named = flow(task_runner=runner, flow_run_name="the-run")(body)
    assert named() == ("FlowRunContext", "the-run", ("TaskRunContext", "context_seen-0", {"x": 3}),
                       ("TaskRunContext", "context_seen-1", {"x": 4}))
    with pytest.raises(MissingContextError, match="No run context available"):
        get_run_context()


def test_cache_key_fn_reuses_completed_result(runner, tmp_path):
    calls = tmp_path / "calls"

    @task(cache_key_fn=lambda context, parameters: str(parameters["x"]))
    def expensive(x, path):
        with open(path, "a") as f:
            f.write("x")
        return x * 10

    def body():
        first = expensive.submit(3, str(calls))
        second = expensive.submit(3, str(calls), wait_for=[first])
        return first.result(), second.result(), second.state.name

    assert run_flow(runner, body) == (30, 30, "Cached")
    assert calls.read_text() == "x"


def broken_key(context, parameters):
    raise RuntimeError("key broke")


def test_a_cache_key_fn_that_raises_is_logged_and_the_run_goes_on_uncached(runner, log_lines):
    """As Prefect: an error computing the key is logged, and the task runs without the cache."""
    keyed = task(cache_key_fn=broken_key)(identity.fn)

    def body():
        return keyed.submit(1).result(), keyed.submit(1).result()

    assert run_flow(runner, body) == (1, 1)
    assert [run.state.name for run in body_runs()] == ["Completed", "Completed"]
    errors = [line for line in log_lines if "computing cache key" in line]
    assert len(errors) == 2 and "broken_key()" in errors[0] and "RuntimeError: key broke" in errors[0]


def test_task_input_hash_caches_runs_with_the_same_inputs(runner, tmp_path):
    from procflow.tasks import task_input_hash

    calls = tmp_path / "calls"

    @task(cache_key_fn=task_input_hash)
    def expensive(x, path):
        with open(path, "a") as f:
            f.write(str(x))
        return x * 10

    def body():
        first = expensive.submit(3, str(calls))
        again = expensive.submit(3, str(calls), wait_for=[first])
        other = expensive.submit(4, str(calls), wait_for=[again])
        return [f.result() for f in (first, again, other)], [f.state.name for f in (first, again, other)]

    assert run_flow(runner, body) == ([30, 30, 40], ["Completed", "Cached", "Completed"])
    assert calls.read_text() == "34"


@task
async def async_double(x):
    await asyncio.sleep(0.01)
    return 2 * x


def test_async_tasks_run_in_their_own_event_loop(runner):
    def body():
        mapped = async_double.map(range(3))
        alone = async_double.submit(mapped[2])
        called = async_double(5)  # a coroutine in a sync flow too, as in Prefect 3
        return mapped.result(), alone.result(), inspect.iscoroutine(called), asyncio.run(called)

    assert run_flow(runner, body) == ([0, 2, 4], 8, True, 10)


def test_wait_and_as_completed(runner):
    def body():
        futures = [stamp.submit(i) for i in range(4)]
        done, not_done = wait(futures)
        order = [f.result()[0] for f in as_completed(futures)]
        return len(done), len(not_done), sorted(order)

    assert run_flow(runner, body) == (4, 0, [0, 1, 2, 3])


def test_future_list_result_and_states(runner):
    def body():
        mapped = add.map([1, 2], [3, 4])
        assert isinstance(mapped, FutureList)
        mapped.wait()
        return [f.state.is_completed() for f in mapped], mapped.result()

    assert run_flow(runner, body) == ([True, True], [4, 6])


def test_state_predicates_prefect_code_asks_answer_from_the_state_type():
    completed, failed = Completed(data=1), Failed(ValueError("x"))
    asked = ("is_completed", "is_failed", "is_final", "is_scheduled", "is_paused", "is_cancelling", "is_pending")
    assert [getattr(completed, name)() for name in asked] == [True, False, True, False, False, False, False]
    assert [getattr(failed, name)() for name in asked] == [False, True, True, False, False, False, False]
    assert {StateType.SCHEDULED, StateType.PAUSED, StateType.CANCELLING} <= set(StateType)  # Prefect's names


def test_submit_and_map_with_return_state_wait_and_give_states(runner):
    """Prefect's `.submit(..., return_state=True)` and `.map(..., return_state=True)`."""
    def body():
        one = add.submit(1, 2, return_state=True)
        failed = boom.submit("no", return_state=True)
        mapped = identity.map([5, 6], return_state=True)
        return ((one.type, one.result()), (failed.type, repr(failed.result(raise_on_failure=False))),
                [(state.type, state.result()) for state in mapped])

    one, failed, mapped = run_flow(runner, body)
    assert one == (StateType.COMPLETED, 3)
    assert failed == (StateType.FAILED, "ValueError('no')")
    assert mapped == [(StateType.COMPLETED, 5), (StateType.COMPLETED, 6)]


def test_a_state_read_from_a_future_stands_for_that_upstream_as_an_argument(runner):
    """Prefect resolves a `State` in a task's arguments as it does a future: to its result."""
    def body():
        done = add.submit(1, 2, return_state=True)
        failed = boom.submit("gone", return_state=True)
        blocked = identity.submit(failed, return_state=True)
        return (identity.submit(done).result(), identity(done), total.submit([done, done]).result(),
                blocked.name, repr(identity.submit(allow_failure(failed)).result()))

    assert run_flow(runner, body) == (3, 3, 6, "NotReady", "ValueError('gone')")
    runs = {run.name: run for run in body_runs()}
    assert runs["identity-0"].state.message == "Upstream task run 'boom-0' did not reach a 'COMPLETED' state."
    assert runs["identity-1"].upstream == runs["identity-2"].upstream == [(runs["add-0"].id, "data")]


def test_parameters_named_like_call_keywords_are_refused_when_decorating():
    def waits(x, wait_for):
        return x

    def states(return_state=False):
        return return_state

    with pytest.raises(ReservedArgumentError, match=re.escape(
            "task 'waits': 'wait_for' is a reserved argument name and cannot be used.")):
        task(waits)
    with pytest.raises(ReservedArgumentError, match=re.escape(
            "flow 'states': 'return_state' is a reserved argument name and cannot be used.")):
        flow(states)


def test_result_raise_on_failure_false_returns_the_exception(runner):
    def body():
        future = boom.submit("x")
        return future.result(raise_on_failure=False)

    error = run_flow(runner, body)
    assert isinstance(error, ValueError)


def test_run_logger_outside_a_run_is_a_missing_context_error():
    with pytest.raises(MissingContextError, match="no active flow or task run"):
        get_run_logger()
    assert issubclass(MissingContextError, RuntimeError)


def test_default_names_follow_prefect():
    def my_pipeline():
        return None

    @task
    def load_rows():
        return 1

    assert flow(my_pipeline).name == "my-pipeline", "a flow's default name has dashes"
    assert flow(name="keep_me")(my_pipeline).name == "keep_me"
    assert load_rows.name == "load_rows", "a task keeps its function's name"


def test_log_prints_and_run_logger_reach_the_parent(runner, log_lines):
    @task(log_prints=True)
    def chatty(n):
        print(f"I'm task {n}!")
        get_run_logger().warning("from the run logger")
        return n

    def body():
        return chatty.submit(7)

    run_flow(runner, body)
    assert "Task run 'chatty-0' - I'm task 7!" in log_lines
    assert "Task run 'chatty-0' - from the run logger" in log_lines
    assert "Task run 'chatty-0' - Finished in state Completed()" in log_lines


@task
def logs_like_a_library():
    logger = get_run_logger()
    try:
        {}["missing"]
    except KeyError:
        logger.error("lookup failed", exc_info=True)
        logger.exception("again, %s", "as exception()")
    logger.info("with extra", extra={"request": 7})
    logger.warning("done %d%%", 100, stack_info=False)
    return logger.isEnabledFor(logging.INFO), logger.isEnabledFor(logging.DEBUG)


def test_the_run_logger_takes_what_a_logging_logger_takes(runner, log_lines):
    """`logger.error(..., exc_info=True)` once failed the task with a TypeError."""
    assert run_flow(runner, lambda: logs_like_a_library.submit().result()) == (True, False)
    text = "\n".join(line for line in log_lines if "logs_like_a_library-0" in line)
    assert "lookup failed\nTraceback (most recent call last):" in text and "KeyError: 'missing'" in text
    assert "again, as exception()\nTraceback" in text
    assert "with extra" in text and "done 100%" in text


def test_map_length_mismatch_and_bad_parameters_fail_before_anything_runs(runner):
    def body():
        add.map([1, 2, 3], [1, 2])

    with pytest.raises(MappingLengthMismatch, match=r"Got lengths: \{'x': 3, 'y': 2\}"):
        run_flow(runner, body)
    assert body_runs() == []

    def bad_name():
        add.submit(1, z=3)

    with pytest.raises(ParameterBindError, match="task 'add'.*'z'") as raised:  # Prefect's name, a TypeError
        run_flow(runner, bad_name)
    assert isinstance(raised.value, TypeError)
    assert body_runs() == []
    with pytest.raises(ParameterBindError, match=r"flow 'bad-name': too many positional arguments \(signature"):
        flow(bad_name)(1)


def test_same_results_and_upstream_records_on_every_runner(runner):
    def body():
        a = add.submit(1, 2)
        b = add.map([a, 4], 1)
        c = total.submit(b, wait_for=[a])
        return c

    assert run_flow(runner, body) == 4 + 5
    shape = [(r.name, sorted((body_runs_index(u), k) for u, k in r.upstream), r.state.name) for r in body_runs()]
    assert shape == [
        ("add-0", [], "Completed"),
        ("add-1", [(0, "data")], "Completed"),
        ("add-2", [], "Completed"),
        ("total-0", [(0, "wait_for"), (1, "data"), (2, "data")], "Completed"),
    ]


def body_runs_index(run_id):
    return [r.id for r in body_runs()].index(run_id)


def test_prefects_other_import_paths_work_with_the_package_name_swapped():
    """A script whose `prefect` was replaced by `procflow` everywhere, not only on its first line."""
    import procflow
    from procflow.exceptions import MappingLengthMismatch as Mismatch, UpstreamTaskError as Upstream
    from procflow.futures import as_completed as completed, wait as waiting
    from procflow.logging import get_run_logger as logger
    from procflow.tasks import task_input_hash
    from procflow.utilities.annotations import allow_failure as allowed, quote as quoted, unmapped as whole

    assert (logger, whole, allowed, quoted, waiting, completed) == (
        procflow.get_run_logger, unmapped, allow_failure, quote, wait, as_completed)
    assert (Mismatch, Upstream) == (MappingLengthMismatch, UpstreamTaskError)
    assert callable(task_input_hash)


def shout(x):
    return x


@pytest.mark.parametrize("option, value, error, words", [
    ("retries", "2", ValueError, "retries must be a whole number of at least 0, got '2'"),
    ("retries", -1, ValueError, "retries must be a whole number of at least 0, got -1"),
    ("retry_delay_seconds", [1, "a"], TypeError, "retry_delay_seconds must be a number of seconds, got str 'a'"),
    ("timeout_seconds", float("nan"), ValueError, "timeout_seconds must be a number of seconds of at least 0, got nan"),
    ("timeout_seconds", "5", TypeError, "timeout_seconds must be a number of seconds, got str '5'"),
    ("retry_delay_seconds", -1, ValueError, "retry_delay_seconds must be a number of seconds of at least 0, got -1"),
    ("task_run_name", 5, TypeError, "Expected string or callable for 'task_run_name'; got int instead."),
    ("cache_key_fn", "key", TypeError, "cache_key_fn must be a function, got str"),
    ("tags", "fast", TypeError, "tags must be a collection of strings, got 'fast'"),
    ("log_prints", "yes", TypeError, "log_prints must be True or False, got 'yes'"),
])
def test_a_bad_task_option_is_refused_when_decorating_naming_the_task(option, value, error, words):
    """`retries="2"` once surfaced only when a run failed, deep in the engine, and hung the flow."""
    with pytest.raises(error, match=re.escape(f"task 'shout': {words}")):
        task(**{option: value})(shout)


@pytest.mark.parametrize("option, value, words", [
    ("retries", 1.5, "retries must be a whole number of at least 0, got 1.5"),
    ("timeout_seconds", -3, "timeout_seconds must be a number of seconds of at least 0, got -3"),
    ("task_runner", "process", "task_runner must be a task runner from procflow.task_runners or procflow.dask"),
])
def test_a_bad_flow_option_is_refused_when_decorating_naming_the_flow(option, value, words):
    with pytest.raises((TypeError, ValueError), match=re.escape(f"flow 'shout': {words}")):
        flow(**{option: value})(shout)


@pytest.mark.parametrize("limit", [0, float("inf"), 1e10])
def test_a_timeout_of_zero_or_inf_or_beyond_any_wait_means_no_limit(runner, limit):
    """Prefect: 0 is no timeout. Issue 19: inf and 1e10 killed the engine thread (OverflowError
    above threading.TIMEOUT_MAX) and the flow hung for ever."""
    limited = task(timeout_seconds=limit)(shout)
    assert limited.timeout_seconds is None
    assert run_flow(runner, lambda: limited.submit(3).result()) == 3
    assert flow(task_runner=runner, timeout_seconds=limit)(lambda: limited(4))() == 4


def test_a_huge_retry_delay_is_held_at_the_longest_wait_there_is():
    assert task(retry_delay_seconds=1e10)(shout).retry_delay_seconds == threading.TIMEOUT_MAX
    assert flow(retry_delay_seconds=float("inf"))(shout).retry_delay_seconds == threading.TIMEOUT_MAX


def test_a_run_name_template_naming_no_parameter_is_a_clear_error(runner):
    named = task(task_run_name="shout-{nope}")(shout)

    with pytest.raises(ValueError, match=re.escape("task 'shout': task_run_name 'shout-{nope}' refers to 'nope', "
                                                   "which is not one of its parameters ['x']")):
        run_flow(runner, lambda: named.submit(1))
    with pytest.raises(ValueError, match=re.escape("flow 'shout': flow_run_name 'run-{y}' refers to 'y'")):
        flow(task_runner=runner, flow_run_name="run-{y}")(shout)(1)


class LibraryAbort(BaseException):
    """A library's own BaseException (as trio's or gevent's), not an Exception."""


@task
def interrupted_at(i):
    if i == 40:
        raise KeyboardInterrupt("raised by the task itself")
    if i == 41:
        raise asyncio.CancelledError("an awaited call was cancelled")
    if i == 42:
        raise LibraryAbort("aborted")
    return i


def test_a_task_raising_a_base_exception_fails_alone(runner):
    """Once, on the process runner, the runs sharing its message failed with it; on the thread
    runners its thread died and the flow waited forever."""
    def body():
        runs = interrupted_at.map(range(60))
        runs.wait()
        return [(run.state.is_completed(), run.result(raise_on_failure=False)) for run in runs]

    outcomes = run_flow(runner, body)
    assert [i for i, (completed, _) in enumerate(outcomes) if not completed] == [40, 41, 42]
    assert all(value == i for i, (completed, value) in enumerate(outcomes) if completed)
    assert isinstance(outcomes[40][1], KeyboardInterrupt) and "raised by the task itself" in str(outcomes[40][1])
    assert isinstance(outcomes[41][1], asyncio.CancelledError)
    assert type(outcomes[42][1]).__name__ == "LibraryAbort"


HOOK_CALLS: list = []


def record_hook(subject, run, state):
    HOOK_CALLS.append((subject.name, run.name, state.name, time.time()))


def broken_hook(subject, run, state):
    raise RuntimeError("hook broke")


@task(on_completion=[record_hook], on_failure=[broken_hook, record_hook], on_running=[record_hook])
def hooked(x):
    if x < 0:
        raise ValueError(x)
    return x


@task
def stamped(x):
    return x, time.time()


def test_state_hooks_run_in_the_flows_process_before_the_run_is_seen_to_end(runner, log_lines):
    """Prefect's on_running / on_completion / on_failure, for tasks and flows: `hook(task or flow,
    run, state)`; a failing hook is logged; downstream runs and futures wait for the hooks."""
    HOOK_CALLS.clear()

    def body():
        done = hooked.submit(1)
        after = stamped.submit(done)
        hooked.submit(-1).wait()
        hooked(2)  # a direct call
        return after.result()

    flow_hooked = flow(task_runner=runner, name="hooked-flow", on_completion=[record_hook],
                       on_running=[record_hook])(body)
    value, downstream_started = flow_hooked()
    calls = [(subject, state) for subject, _, state, _ in HOOK_CALLS]
    assert calls[0] == ("hooked-flow", "Running") and calls[-1] == ("hooked-flow", "Completed")
    assert sorted(calls[1:-1]) == sorted([("hooked", "Running")] * 3 + [("hooked", "Completed")] * 2
                                         + [("hooked", "Failed")])
    by_run = {(run, state): at for _, run, state, at in HOOK_CALLS}
    assert by_run[("hooked-0", "Completed")] <= downstream_started, "the downstream ran before the hook"
    assert value == 1
    assert any("An error was encountered while running hook 'broken_hook'" in line and "hook broke" in line
               for line in log_lines)
    assert any("Task run 'hooked-1' - Running hook 'record_hook' in response to entering state 'Failed'" in line
               for line in log_lines)


def test_hooks_given_by_decorator_methods_and_kept_by_with_options():
    named = task(shout)

    @named.on_failure
    def first(task_, run, state):
        pass

    assert named.with_options(retries=1).state_hooks["on_failure"] == [first]
    named_flow = flow(shout)
    named_flow.on_cancellation(first)
    assert named_flow.with_options(retries=1).state_hooks["on_cancellation"] == [first]


def test_prefects_other_options_are_kept_accepted_with_a_warning_or_refused_clearly():
    """Prefect code with `description=`, `retry_jitter_factor=` or `cache_policy=`: what each becomes."""
    described = task(description="loads the data", version="2")(shout)
    assert (described.description, described.version) == ("loads the data", "2")
    assert described.with_options(retries=1).description == "loads the data"
    from procflow import options

    options._warned.discard("result_serializer")
    with pytest.warns(UserWarning, match="task 'shout': result_serializer= has no effect in procflow"):
        assert task(result_serializer="json")(shout).result_serializer == "json"  # kept, as Prefect's attribute
    with pytest.raises(TypeError, match="task 'shout': cache_policy must be a policy of procflow.cache_policies"):
        task(cache_policy=object())(shout)
    with pytest.raises(TypeError, match="task 'shout': Expected callables in 'on_failure'; got int instead"):
        task(on_failure=[3])(shout)
    with pytest.raises(TypeError, match="task 'shout': Expected iterable for 'on_failure'; got function instead"):
        task(on_failure=shout)(shout)  # one function alone: Prefect asks for a list
    with pytest.raises(TypeError, match="unexpected keyword argument 'retires'"):
        flow(retires=2)(shout)


def test_retry_jitter_spreads_each_delay_within_its_factor_and_bad_retry_options_are_refused():
    """Prefect's `retry_jitter_factor`: a delay d is drawn from [d(1-f), d(1+f)]; Prefect's checks
    of the retry options (over 50 delays, a negative factor, a delay that is not a number)."""
    jittered = task(retries=3, retry_delay_seconds=10, retry_jitter_factor=0.5)(shout)
    delays = [retry_delay(jittered, 1) for _ in range(200)]
    assert all(5 <= delay <= 15 for delay in delays) and len(set(delays)) > 100
    assert retry_delay(task(retries=3, retry_delay_seconds=10)(shout), 1) == 10
    with pytest.raises(ValueError, match="Can not configure more than 50 retry delays per task"):
        task(retries=60, retry_delay_seconds=list(range(51)))(shout)
    with pytest.raises(ValueError, match="`retry_jitter_factor` must be >= 0"):
        task(retries=1, retry_jitter_factor=-1)(shout)
    with pytest.raises(TypeError, match="Invalid retry_delay_seconds"):
        task(retries=1, retry_delay_seconds={"x": 4})(shout)


@pytest.mark.parametrize("option, value, error, words", [
    ("shm_threshold_bytes", "1M", ValueError, "ProcessPoolTaskRunner: shm_threshold_bytes must be a whole number"),
    ("max_workers", 10**6, ValueError, "ProcessPoolTaskRunner: max_workers=1000000 is more than"),
    ("worker_env", {"A": 1}, TypeError, "ProcessPoolTaskRunner: worker_env must map strings to strings, got 'A': 1"),
    ("initializer", 5, TypeError, "ProcessPoolTaskRunner: initializer must be a function, got int"),
    ("keep_segments_between_runs", "no", TypeError,
     "ProcessPoolTaskRunner: keep_segments_between_runs must be True, False or a number of seconds above 0"),
    ("initargs", [1], TypeError, "ProcessPoolTaskRunner: initargs must be a tuple, got list"),
])
def test_a_bad_runner_option_is_refused_when_the_runner_is_made(option, value, error, words):
    """Issue 19: these were taken as given and failed later, or (10**6 workers) started processes."""
    from procflow.task_runners import ProcessPoolTaskRunner

    with pytest.raises(error, match=re.escape(words)):
        ProcessPoolTaskRunner(**{option: value})


def test_a_task_or_flow_name_that_is_not_a_string_is_refused():
    with pytest.raises(TypeError, match=re.escape("Expected string for task parameter 'name'; got int instead.")):
        task(name=5)(shout)
    with pytest.raises(TypeError, match=re.escape("Expected string for flow parameter 'name'; got int instead.")):
        flow(name=5)(shout)


@dataclasses.dataclass
class TreeNode:
    name: str
    parent: "TreeNode | None" = None
    children: list = dataclasses.field(default_factory=list)


def test_self_referencing_and_very_deep_arguments_are_handled(runner):
    """Issue 19: the walk over arguments raised RecursionError in the flow body for a tree with
    parent pointers, a list that contains itself, and a list nested 10 000 deep."""
    root = TreeNode("root")
    root.children.append(TreeNode("leaf", parent=root))
    looped: list = [1]
    looped.append(looped)
    deep: list = []
    inner = deep
    for _ in range(10_000):
        inner.append([])
        inner = inner[0]

    @task
    def describe(tree, loop, depth_probe):
        return tree.children[0].parent.name, loop[1] is loop, len(depth_probe)

    def body():
        return describe(root, looped, deep), describe.submit(root, looped, [len(deep)]).result()

    direct, submitted = run_flow(runner, body)
    assert direct == ("root", True, 1) and submitted == ("root", True, 1)


def test_a_self_referencing_argument_beside_a_future_keeps_its_shape(runner):
    looped: list = []
    looped.append(looped)

    @task
    def shape(pair):
        value, loop = pair
        return value, loop[0] is loop

    def body():
        return shape.submit([add.submit(1, 1), looped]).result()

    assert run_flow(runner, body) == (2, True)


@task
def own_ids(index=0):
    """The run's id as Prefect code reads it inside the run, both ways."""
    return procflow.context.TaskRunContext.get().task_run.id, task_run.id


def test_a_task_runs_id_is_one_uuid_wherever_it_is_read(runner):
    import concurrent.futures
    import uuid

    @flow(task_runner=runner)
    def ids():
        futures = [own_ids.submit(), *own_ids.map(range(2))]
        read = [future.result() for future in futures]
        return [(future.task_run_id, future.wrapped_future) for future in futures], read

    (made, read) = ids()
    for (future_id, wrapped), (inside, as_text) in zip(made, read, strict=True):
        assert isinstance(future_id, uuid.UUID) and future_id == inside and as_text == str(future_id)
        assert isinstance(wrapped, concurrent.futures.Future) and wrapped.result(timeout=5).is_completed()
    assert len({future_id for future_id, _ in made}) == 3


def test_task_run_ids_differ_between_processes_and_flow_runs():
    """Prefect code keys files and rows by `task_run.id`: no other run may share it, in this
    process or another one."""
    import subprocess
    import sys

    script = "from procflow import flow, task, runtime\n" \
             "@task\ndef one(): return runtime.task_run.id\n" \
             "@flow\ndef f(): return one()\n" \
             "print(f())"
    there = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120).stdout.strip() for _ in range(2)}

    @flow
    def here():
        return own_ids()[1], own_ids()[1]

    ids = {*here(), *here(), *there}
    assert len(ids) == 6 and all(len(text) == 36 for text in ids)


@task
def tags_seen(index=0):
    return procflow.context.TagsContext.get().current_tags


def test_tags_context_gives_the_tags_of_the_block_where_the_run_was_made(runner):
    @flow(task_runner=runner)
    def tagged():
        with procflow.tags("nightly", "etl"):
            here = procflow.context.TagsContext.get().current_tags
            futures = [tags_seen.submit(), *tags_seen.map(range(2))]
        return here, [future.result() for future in futures], procflow.context.TagsContext.get().current_tags

    here, seen, after = tagged()
    assert here == {"nightly", "etl"} and seen == [{"nightly", "etl"}] * 3 and after == set()


@task
def flow_ids_seen(index=0):
    return flow_run.id, procflow.context.TaskRunContext.get().task_run.flow_run_id


def test_a_task_knows_its_flow_runs_id_wherever_it_runs(runner):
    """Prefect code names outputs by the flow run (`out/{flow_run.id}/part-3`): in a worker too."""

    @flow(task_runner=runner)
    def nightly():
        return [future.result() for future in [flow_ids_seen.submit(), *flow_ids_seen.map(range(2))]]

    first = nightly()
    first_id = nightly.last_run.id
    second = nightly()
    second_id = nightly.last_run.id
    assert first == [(first_id, first_id)] * 3 and second == [(second_id, second_id)] * 3
    assert first_id != second_id and len(first_id) == 36


@task(retries=2)
def attempts_seen(marker):
    context = procflow.context.TaskRunContext.get()
    seen = (context.task_run.state_name, context.task_run.run_count, context.start_time)
    with open(marker, "a") as log:
        log.write(f"{seen[0]},{seen[1]},{seen[2].timestamp()}\n")
    if seen[1] < 3:
        raise ValueError("not yet")
    return seen[1]


def test_a_task_sees_its_attempts_state_and_start_inside_the_run(runner, tmp_path):
    marker = tmp_path / "attempts.csv"

    @flow(task_runner=runner)
    def flaky():
        return attempts_seen.submit(str(marker)).result()

    assert flaky() == 3
    rows = [line.split(",") for line in marker.read_text().splitlines()]
    assert [(name, int(count)) for name, count, _ in rows] == [("Running", 1), ("Retrying", 2), ("Retrying", 3)]
    starts = [float(stamp) for _, _, stamp in rows]
    assert starts == sorted(starts) and len(set(starts)) == 3


@task
def countdown_by_submits(n):
    """Submits itself until n is 0 and waits for it: a recursion of task runs, each waiting."""
    if n == 0:
        return [os.getpid()]
    return [os.getpid(), *countdown_by_submits.submit(n - 1).result()]


def test_a_task_that_submits_and_waits_for_itself_recursively_never_starves_or_nests_pools(runner):
    """Prefect's ThreadPoolTaskRunner regression (prefect#14194) at 12 levels: more than the
    thread runner's workers and loky's nesting limit of 10. A task's own submits run on threads
    of its own process, as many as wait, so each level finds one."""

    @flow(task_runner=runner)
    def recursion():
        return countdown_by_submits.submit(12).result()

    pids = recursion()
    assert len(pids) == 13 and len(set(pids)) == 1  # every level ran beside the first, in its process


@task
def leaves_a_marker(path, steps):
    for _ in range(steps):  # a Python loop: an interrupt lands between two sleeps
        time.sleep(0.01)
    Path(path).write_text("done")


@task
def submits_and_returns(path, fail):
    leaves_a_marker.submit(path, 200 if fail else 20)  # not waited for here
    if fail:
        raise ValueError("the submitting task failed")
    return "returned"


def test_a_tasks_own_submits_end_with_it_waited_for_or_stopped_if_it_failed(runner, tmp_path):
    @flow(task_runner=runner)
    def outer():
        done = submits_and_returns.submit(str(tmp_path / "waited"), False)
        done.wait()
        seen_when_done = (tmp_path / "waited").exists()
        failed = submits_and_returns.submit(str(tmp_path / "stopped"), True)
        started = time.monotonic()
        failed.wait()
        return seen_when_done, done.result(), failed.state.is_failed(), time.monotonic() - started

    seen_when_done, value, failed, seconds = outer()
    assert seen_when_done and value == "returned"  # the run waited for what it submitted
    assert failed and seconds < 1.5  # a 2 s child did not hold the failed run
    time.sleep(2.5)
    assert not (tmp_path / "stopped").exists()  # it was stopped, not left running
