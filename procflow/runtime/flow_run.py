"""The flow run in progress (Prefect's `prefect.runtime.flow_run`): attributes read at access."""

from __future__ import annotations

from typing import Any

from ..context import current_flow
from ..current import FlowRunInfo, current_task_run, naming_flow_run

__all__ = ["flow_name", "name", "parameters", "run_count"]  # noqa: F822 - read at access, by __getattr__


def _current() -> FlowRunInfo | None:
    naming = naming_flow_run.get()
    if naming is not None:
        return naming
    context = current_flow.get()
    if context is not None:
        run = context.flow_run
        return FlowRunInfo(run.name, run.flow_name, run.parameters, run.run_count)
    task_run = current_task_run.get()
    if task_run is not None and task_run.flow_run_name:  # in a worker: only its name travels
        return FlowRunInfo(task_run.flow_run_name, None, {}, task_run.flow_run_count)
    return None


def __getattr__(attribute: str) -> Any:
    run = _current()
    if attribute == "name":
        return None if run is None else run.name
    if attribute == "flow_name":
        return None if run is None else run.flow_name
    if attribute == "parameters":
        return {} if run is None else dict(run.parameters)
    if attribute == "run_count":  # 1 on the first attempt; 0 outside a flow run, as in Prefect
        return 0 if run is None else run.run_count
    raise AttributeError(f"{__name__} has no attribute {attribute!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
