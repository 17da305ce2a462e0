"""Many states to one, by Prefect's rule: the final state of a flow run that returned States
(or, returning None, of all its task runs), and `StateGroup`, the counts that rule reads."""

from __future__ import annotations

from typing import Any

from .states import Cancelled, Completed, Failed, State, StateType

__all__ = ["StateGroup", "aggregate"]


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


class StateGroup:
    """Prefect's counts over several states (the aggregate a flow's final state is made from)."""

    def __init__(self, states: list[State]) -> None:
        self.states = list(states)
        self.type_counts: dict[StateType, int] = {kind: 0 for kind in StateType}
        for state in self.states:
            self.type_counts[state.type] += 1
        self.total_count = len(self.states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.paused_count = self.type_counts[StateType.PAUSED]
        self.final_count = sum(state.is_final() for state in self.states)
        self.not_final_count = self.total_count - self.final_count

    @property
    def fail_count(self) -> int:
        return self.type_counts[StateType.FAILED] + self.type_counts[StateType.CRASHED]

    def all_completed(self) -> bool:
        return self.type_counts[StateType.COMPLETED] == self.total_count

    def any_cancelled(self) -> bool:
        return self.cancelled_count > 0

    def any_failed(self) -> bool:
        return self.fail_count > 0

    def any_paused(self) -> bool:
        return self.paused_count > 0

    def all_final(self) -> bool:
        return self.final_count == self.total_count

    def counts_message(self) -> str:
        parts = [f"total={self.total_count}"] + ([f"not_final={self.not_final_count}"] if self.not_final_count else [])
        return ", ".join(parts + [f"{kind.value!r}={count}" for kind, count in self.type_counts.items() if count])

    def __repr__(self) -> str:
        return f"StateGroup<{self.counts_message()}>"
