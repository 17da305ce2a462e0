"""Prefect's import path `prefect.client.schemas.objects`: states and run records, procflow's own."""

from ...records import FlowRun, TaskRun
from ...states import State, StateType

__all__ = ["FlowRun", "State", "StateType", "TaskRun"]
