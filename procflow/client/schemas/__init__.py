"""Prefect's import path `prefect.client.schemas`."""

from .objects import FlowRun, State, StateType, TaskRun

__all__ = ["FlowRun", "State", "StateType", "TaskRun"]
