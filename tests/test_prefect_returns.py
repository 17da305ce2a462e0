"""Issue 16: what a flow returns and the states users make, as Prefect 3.8 does.

Ported from Prefect's `tests/test_flows.py` (`TestFlowCall`, `TestFlowStateRules`'s
returned-state cases) and `tests/test_states.py` (states made by hand), on every runner.
"""

from __future__ import annotations

import pytest

from procflow import flow, task
from procflow.states import Cancelled, Completed, Crashed, Failed, State, StateType


@task
def one():
    return 1


@task
def double(x):
    return 2 * x


@task
def fail():
    raise ValueError("Test")


def on(runner, fn):
    return flow(task_runner=runner)(fn)


def test_a_returned_future_gives_its_state(runner):
    """`return t.submit(1)` makes the call return `Completed()`, whose `.result()` is 1."""
    returned = on(runner, lambda: one.submit())()
    assert isinstance(returned, State) and repr(returned) == "Completed()"
    assert returned.result() == 1


def test_a_returned_map_gives_a_list_of_states(runner):
    returned = on(runner, lambda: double.map([1, 2, 3]))()
    assert [type(state) for state in returned] == [State] * 3
    assert [state.result() for state in returned] == [2, 4, 6]


def test_flow_state_reflects_returned_task_run_state(runner):
    """Prefect's test of the same name: the task run's state is the data of the flow's."""
    def body():
        return fail(return_state=True)

    flow_state = on(runner, body)(return_state=True)
    assert flow_state.is_failed()
    task_run_state = flow_state.result(raise_on_failure=False)
    assert isinstance(task_run_state, State) and task_run_state.is_failed()
    with pytest.raises(ValueError, match="Test"):
        flow_state.result()


def test_a_failed_flow_raises_its_first_failed_returned_run(runner):
    def body():
        return [one.submit(), fail.submit()]

    with pytest.raises(ValueError, match="Test"):
        on(runner, body)()
    state = on(runner, body)(return_state=True)
    assert repr(state) == "Failed('1/2 states failed.')"
    first, second = state.result(raise_on_failure=False)
    assert first.is_completed() and second.is_failed()


def test_a_mix_of_states_and_data_is_data(runner):
    """SPEC §1: `(None, failed_state)` is data: `Completed`."""
    def body():
        return None, fail(return_state=True)

    state = on(runner, body)(return_state=True)
    assert repr(state) == "Completed()"
    none, failed = state.result()
    assert none is None and failed.is_failed()


def test_any_cancelled_state_makes_the_flow_cancelled_even_beside_a_failed_one(runner):
    def body():
        return [Completed(), Failed(message="no"), Cancelled()]

    state = on(runner, body)(return_state=True)
    assert state.is_cancelled() and state.message == "1/3 states cancelled."


def test_states_made_by_hand_take_their_name_from_the_type():
    assert State(type=StateType.CANCELLED).name == "Cancelled"
    assert repr(State(type=StateType.COMPLETED)) == "Completed()"
    assert (repr(Crashed()), repr(Failed()), repr(Cancelled())) == ("Crashed()", "Failed()", "Cancelled()")
    assert Failed(data=ValueError("x")).result(raise_on_failure=False).args == ("x",)
    assert Failed(message="why").message == "why"
    with pytest.raises(Exception, match="Run failed|The run failed"):
        Failed().result()


@pytest.mark.parametrize("made, hook", [(lambda: State(type=StateType.CANCELLED), "on_cancellation"),
                                        (lambda: Crashed(), "on_crashed")])
def test_a_flow_returning_a_cancelled_or_crashed_state_ends_in_it_and_runs_its_hook(made, hook, runner):
    called = []

    def body():
        return made()

    subject = flow(task_runner=runner, **{hook: [lambda flow_, run, state: called.append(state.type)]})(body)
    state = subject(return_state=True)
    assert state.type is made().type
    assert called == [made().type]
