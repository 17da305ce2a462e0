"""Many states to one, by Prefect's rule: the final state of a flow run that returned States
(or, returning None, of all its task runs), from the counts of a `StateGroup`."""

from __future__ import annotations

from typing import Any

from .state_groups import StateGroup, StateType
from .states import Cancelled, Completed, Failed, State

def aggregate(states: list[State], data: Any) -> State:
    """Prefect's precedence (`return_value_to_state`): all completed gives Completed; any
    cancelled, Cancelled; any paused, Paused; else Failed, whose message counts every state
    that did not complete, so a run that never ran because an upstream failed counts too
    (SPEC §1: '3/4 states failed.', where Prefect counts only the failed ones and says
    '… states are not final.' when none failed). `data` is the state's result."""
    group = StateGroup(states)
    if group.all_completed():
        return Completed(data, message="All states completed.")
    if group.any_cancelled():
        return Cancelled(f"{group.cancelled_count}/{group.total_count} states cancelled.", data=data)
    if group.any_paused():
        return State(StateType.PAUSED, "Paused", f"{group.paused_count}/{group.total_count} states paused.", data)
    not_completed = group.total_count - group.type_counts[StateType.COMPLETED]
    message = f"{not_completed}/{group.total_count} states failed."
    return Failed(data=data, message=message)
