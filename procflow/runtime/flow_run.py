"""The flow run in progress (Prefect's `prefect.runtime.flow_run`): attributes read at access.

Where the values come from, first found: the run a `flow_run_name` function is naming; the
`FlowRunContext` (the flow's own process, or one a test entered); in a worker process, the
name and attempt that travel with the task run. Outside a run: None, `[]`, `{}` or 0, as in
Prefect, and `PREFECT__FLOW_RUN_ID` for `id`. `PREFECT__RUNTIME__FLOW_RUN__<NAME>` overrides
an attribute (`_fields.py`).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from ..context import current_tags
from ..current import FlowRunContext, TaskRunContext, current_task_run, naming_flow_run
from ._fields import Fields, attribute

__all__ = ["api_url", "flow_name", "flow_version", "id", "job_variables", "name", "parameters",  # noqa: F822
           "parent_deployment_id", "parent_flow_run_id", "root_flow_run_id", "run_count",
           "scheduled_start_time", "tags", "ui_url"]  # read at access, by __getattr__


def get_id() -> str | None:
    context, task_context = FlowRunContext.get(), TaskRunContext.get()
    if context is not None:
        run_id = getattr(context.flow_run, "id", None)
        return None if run_id is None else str(run_id)
    if task_context is not None:
        run_id = getattr(task_context.task_run, "flow_run_id", None)  # in a worker: it came with the run
        return None if run_id is None else str(run_id)
    return os.environ.get("PREFECT__FLOW_RUN_ID")


def get_name() -> str | None:
    naming, context = naming_flow_run.get(), FlowRunContext.get()
    if naming is not None:
        return naming.name
    if context is not None:
        return getattr(context.flow_run, "name", None)
    task_run = current_task_run.get()  # in a worker: the flow run's name travels with the task run
    return None if task_run is None else task_run.flow_run_name


def get_flow_name() -> str | None:
    naming, context = naming_flow_run.get(), FlowRunContext.get()
    if naming is not None:
        return naming.flow_name
    if context is None:
        return None
    if context.flow is not None:
        return str(context.flow.name)
    return getattr(context.flow_run, "flow_name", None)


def get_flow_version() -> str | None:
    context = FlowRunContext.get()
    return None if context is None or context.flow is None else context.flow.version


def get_parameters() -> dict[str, Any]:
    naming, context = naming_flow_run.get(), FlowRunContext.get()
    if naming is not None:
        return dict(naming.parameters)
    return {} if context is None else dict(context.parameters or {})


def get_run_count() -> int:
    """1 on the first attempt; 0 outside a flow run, as in Prefect."""
    naming, context = naming_flow_run.get(), FlowRunContext.get()
    if naming is not None:
        return naming.run_count
    if context is not None:
        return getattr(context.flow_run, "run_count", 0)
    task_run = current_task_run.get()
    return task_run.flow_run_count if task_run is not None and task_run.flow_run_name else 0


def get_tags() -> list[str]:
    context = FlowRunContext.get()
    if context is None:
        return []
    given = getattr(context.flow_run, "tags", None)  # a record a test built with tags
    return list(given) if given is not None else sorted(current_tags())


def get_scheduled_start_time() -> datetime.datetime:
    """No scheduler here: a flow run starts when it is called (now, outside a run)."""
    context = FlowRunContext.get()
    start = getattr(context.flow_run, "start_time", None) if context is not None else None
    if not start:
        return datetime.datetime.now(datetime.timezone.utc)
    return datetime.datetime.fromtimestamp(start, datetime.timezone.utc)


def get_parent_flow_run_id() -> str | None:
    context = FlowRunContext.get()
    parent = getattr(context.flow_run, "parent", None) if context is not None else None
    return None if parent is None else str(parent.id)


def get_root_flow_run_id() -> str | None:
    context = FlowRunContext.get()
    if context is None:  # in a worker the flow run's own id is known, not its root's
        return None if current_task_run.get() is not None else get_id()
    run = context.flow_run
    while getattr(run, "parent", None) is not None:
        run = run.parent
    run_id = getattr(run, "id", None)
    return None if run_id is None else str(run_id)


def get_job_variables() -> dict[str, Any] | None:
    context = FlowRunContext.get()
    return None if context is None else getattr(context.flow_run, "job_variables", None)


def _none() -> None:
    """Deployments, their parent and the server's URLs do not exist here: None, as Prefect outside them."""
    return None


FIELDS: Fields = {
    "id": get_id, "tags": get_tags, "scheduled_start_time": get_scheduled_start_time, "name": get_name,
    "flow_name": get_flow_name, "parameters": get_parameters, "parent_flow_run_id": get_parent_flow_run_id,
    "parent_deployment_id": _none, "root_flow_run_id": get_root_flow_run_id, "run_count": get_run_count,
    "api_url": _none, "ui_url": _none, "flow_version": get_flow_version, "job_variables": get_job_variables,
}


def __getattr__(name: str) -> Any:
    return attribute(__name__, "FLOW_RUN", FIELDS, name)


def __dir__() -> list[str]:
    return sorted(__all__)
