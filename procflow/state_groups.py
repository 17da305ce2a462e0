"""State types, and `StateGroup`: Prefect's counts over several states (a leaf below `states.py`).

The counts read only each state's `type` and `is_final()`, so this module needs no `State`:
`states.py` re-exports both names, where Prefect users import them from.
"""

from __future__ import annotations

import enum
from typing import Any


class StateType(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    # Prefect's other types, for code that compares with them; procflow makes no such state.
    SCHEDULED = "SCHEDULED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


FINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


class StateGroup:
    """Prefect's counts over several states (the aggregate a flow's final state is made from)."""

    def __init__(self, states: list[Any]) -> None:
        self.states = list(states)
        self.type_counts: dict[StateType, int] = {kind: 0 for kind in StateType}
        for state in self.states:
            self.type_counts[state.type] += 1
        self.total_count = len(self.states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.paused_count = self.type_counts[StateType.PAUSED]
        self.final_count: int = sum(bool(state.is_final()) for state in self.states)
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
