"""The flow run in progress (Prefect's `prefect.runtime.flow_run`): attributes read at access."""

from __future__ import annotations

import datetime
from typing import Any

from ..context import current_flow, current_tags
from ..current import FlowRunInfo, current_task_run, naming_flow_run
from ..records import FlowRun

__all__ = ["flow_name", "id", "name", "parameters", "parent_flow_run_id", "root_flow_run_id",  # noqa: F822
           "run_count", "scheduled_start_time", "tags"]  # read at access, by __getattr__


def _record() -> FlowRun | None:
    """The flow run's record, in the flow's own process (a worker knows only the run's name)."""
    context = current_flow.get()
    return None if context is None else context.flow_run


def _from_record(attribute: str) -> Any:
    run = _record()
    if attribute == "id":
        return None if run is None else run.id
    if attribute == "parent_flow_run_id":
        return None if run is None or run.parent is None else run.parent.id
    if attribute == "root_flow_run_id":
        while run is not None and run.parent is not None:
            run = run.parent
        return None if run is None else run.id
    if attribute == "scheduled_start_time":  # no scheduler here: it started when it was called
        return None if run is None else datetime.datetime.fromtimestamp(run.start_time, datetime.timezone.utc)
    if attribute == "tags":
        return [] if run is None else sorted(current_tags())
    raise AttributeError(f"{__name__} has no attribute {attribute!r}")


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
    return _from_record(attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
