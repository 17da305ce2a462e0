"""Prefect's future classes (ported from Prefect 3.8's tests/test_futures.py): code that builds
`PrefectConcurrentFuture(task_run_id, future)` or subclasses `PrefectWrappedFuture` works with
procflow's `wait`, `as_completed`, `resolve_futures_to_*` and `PrefectFutureList`."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

from procflow import flow, task
from procflow.futures import (PrefectConcurrentFuture, PrefectFuture, PrefectFutureList, PrefectWrappedFuture,
                              TaskFuture, as_completed, resolve_futures_to_results, resolve_futures_to_states, wait)
from procflow.states import Completed, Failed


class MockFuture(PrefectWrappedFuture[Any, Future]):
    def __init__(self, data: Any = 42):
        super().__init__(uuid.uuid4(), Future())
        self._final_state = Completed(data=data)

    def wait(self, timeout: float | None = None) -> None:
        pass

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        return self._final_state.result()


def test_wait_and_as_completed_take_prefects_future_kinds():
    futures = [MockFuture(data=i) for i in range(5)]
    assert wait(futures).not_done == set()
    assert sorted(future.result() for future in as_completed(futures)) == [0, 1, 2, 3, 4]
    hanging = PrefectConcurrentFuture(uuid.uuid4(), Future())
    done, not_done = wait([*futures, hanging], timeout=0.01)
    assert not_done == {hanging} and len(done) == 5
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        wait(futures, timeout=-1)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        list(as_completed(futures, timeout=-1))


def test_a_concurrent_future_gives_its_states_result_or_its_value():
    with_state, with_value, failing = Future(), Future(), Future()
    with_state.set_result(Completed(data="from a state"))
    with_value.set_result("plain")
    failing.set_result(Failed(data=ValueError("oops")))
    assert PrefectConcurrentFuture(uuid.uuid4(), with_state).result() == "from a state"
    assert PrefectConcurrentFuture(uuid.uuid4(), with_value).result() == "plain"
    failed = PrefectConcurrentFuture(uuid.uuid4(), failing)
    with pytest.raises(ValueError, match="oops"):
        failed.result()
    assert isinstance(failed.result(raise_on_failure=False), ValueError) and failed.state.is_failed()
    pending = PrefectConcurrentFuture(uuid.uuid4(), Future())
    with pytest.raises(TimeoutError, match="did not complete within 0.01 seconds"):
        pending.result(timeout=0.01)
    assert pending.state.is_pending()


def test_resolve_futures_replaces_both_kinds_in_containers_dict_keys_and_dataclasses():
    @dataclass
    class Holder:
        foo: Any
        nested: list

    one, two = MockFuture("a"), MockFuture("b")
    assert resolve_futures_to_states((1, one)) == (1, one.state)
    assert resolve_futures_to_states(OrderedDict([(one, two)])) == OrderedDict([(one.state, two.state)])
    assert resolve_futures_to_results(Holder(foo=one, nested=[[two]])) == Holder(foo="a", nested=[["b"]])
    plain = resolve_futures_to_states(PrefectFutureList([one, one]))
    assert type(plain) is list and plain == [one.state, one.state]

    @task
    def double(x):
        return 2 * x

    @flow
    def mixed():
        return resolve_futures_to_results({"ours": double.submit(2), "theirs": MockFuture(5)})

    assert mixed() == {"ours": 4, "theirs": 5}


def test_procflows_futures_are_prefect_futures_and_future_lists_time_out_in_prefects_words():
    @task
    def one():
        return 1

    @flow
    def run():
        future = one.submit()
        return isinstance(future, PrefectFuture), isinstance(future, TaskFuture), future.result()

    assert run() == (True, True, 1)
    futures = PrefectFutureList([PrefectConcurrentFuture(uuid.uuid4(), Future())])
    with pytest.raises(TimeoutError, match="Timed out waiting for all futures to complete within 0.05 seconds"):
        futures.result(timeout=0.05)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        futures.result(timeout=-1)


def test_a_user_can_attach_attributes_to_a_future_and_read_them_as_it_completes():
    from procflow.task_runners import ThreadPoolTaskRunner

    @task
    def double(x):
        return 2 * x

    @flow(task_runner=ThreadPoolTaskRunner(4))
    def pipeline():
        futures = []
        for x in (1, 2, 3):
            future = double.submit(x)
            future.parameters = {"x": x}  # as Prefect's futures allow
            futures.append(future)
        return sorted((f.parameters["x"], f.result()) for f in as_completed(futures))

    assert pipeline() == [(1, 2), (2, 4), (3, 6)]


def test_map_over_a_prefect_future_of_another_kind_maps_over_its_result(runner):
    """A `.map()` argument that is any Prefect future (one made outside procflow's engine, as
    Prefect's own tests and integrations make) is waited for and mapped over, as procflow's are."""
    made = Future()
    made.set_result([1, 2, 3])
    outside = PrefectConcurrentFuture(uuid.uuid4(), made)

    @task
    def pair(a, b):
        return a, b

    @flow(task_runner=runner)
    def mapped():
        return [future.result() for future in pair.map(outside, outside)]

    assert mapped() == [(1, 1), (2, 2), (3, 3)]
