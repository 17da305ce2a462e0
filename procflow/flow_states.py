"""A flow run's final state from what its function returned or raised.

The final state follows Prefect 2's rule (SPEC §1): the function raised -> `Failed` with that
exception; it returned `None` -> every task run of the flow run counts; it returned a
future or a state, or a list, tuple, set or dict (its values) made only of those -> those
count; a state it made itself (`return Failed(message=...)`) -> that state; anything else,
a mix of states and other values included -> data, `Completed`. Among counted runs, Prefect's
precedence (`aggregate.py`): any cancelled -> `Cancelled('1/3 states cancelled.')`, else any
not completed -> `Failed('1/3 states failed.')` (or `'… states are not final.'`). A subflow's
state (`return_state=True`) counts as a run's: its flow run is in its `state_details`.
As in Prefect, futures in the return value become their *States*: `return t.submit(1)`
makes the call return `Completed()`, whose `.result()` is 1. Calling a failed flow raises
the exception of the first failed run that counted (an `UpstreamTaskError` for a run that
never ran); its state's `.result(raise_on_failure=False)` is what it returned.
"""

from __future__ import annotations

from typing import Any

from .aggregate import aggregate
from .annotations import quote
from .records import TaskRun
from .resolve import substitute
from .states import Completed, Failed, State, describe_error


def final_state(value: Any, error: BaseException | None, runs: list[TaskRun], timed_out: bool = False) -> State:
    """Prefect 2's rule for a flow run's final state (see the module docstring)."""
    if error is not None:
        if timed_out:
            return Failed(error, message=str(error), name="TimedOut")  # Prefect's message
        return Failed(error, message=f"Flow run encountered an exception: {describe_error(error)}")
    if isinstance(value, State) and _made_by_hand(value, runs):
        return value  # a state the flow made itself is its final state, as in Prefect
    if value is None:  # Prefect 2: every task run of the flow run counts; the call returns None
        states = [run.state for run in runs] or None
        data = states
    else:
        data = _futures_to_states(value)
        states = _returned_states(data)
    if states is None:
        return Completed(None if value is None else data)
    state = aggregate(states, data)
    if value is None and state.is_completed():  # the call returns None, as the function did
        return Completed(None, message=state.message)
    return state


def _made_by_hand(state: State, runs: list[TaskRun]) -> bool:
    """Not a run's state: not read from a future, not a task run's, not a flow run's (a subflow's)."""
    return state.holder is None and not state.state_details and not any(state is run.state for run in runs)


def _returned_states(data: Any) -> list[State] | None:
    """The States a flow returned: one, or a collection made only of States; else None (data)."""
    if isinstance(data, State):
        return [data]
    items = data.values() if isinstance(data, dict) else data if isinstance(data, (list, tuple, set)) else None
    if items and all(isinstance(item, State) for item in items):
        return list(items)
    return None


def _futures_to_states(value: Any) -> Any:
    """Futures anywhere in the return value become their States, as in Prefect; a returned
    `quote(...)` is returned as it is."""
    if isinstance(value, quote):
        return value
    return substitute(value, lambda future, _: future.state)
