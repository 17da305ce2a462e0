"""The task run in progress (Prefect's `prefect.runtime.task_run`): attributes read at access,
from the `TaskRunContext` (set wherever the run executes: a worker, a thread, the flow's own
process; or one a test entered). Outside a run: None, `[]`, `{}` or 0, as in Prefect.
`PREFECT__RUNTIME__TASK_RUN__<NAME>` overrides an attribute (`_fields.py`)."""

from __future__ import annotations

from typing import Any

from ..current import TaskRunContext, current_task_run
from ._fields import Fields, attribute

__all__ = ["api_url", "id", "name", "parameters", "run_count", "tags", "task_name", "ui_url"]  # noqa: F822


def _context() -> TaskRunContext | None:
    """The run in progress, or the one being named (its id is not made yet): a run-name function
    reads `task_run.parameters` of the run it names, as in Prefect."""
    context = TaskRunContext.get()
    if context is None:
        naming = current_task_run.get()
        return None if naming is None else TaskRunContext.of(naming)
    return context


def get_id() -> str | None:
    context = _context()
    run_id = None if context is None else getattr(context.task_run, "id", None)
    return None if run_id is None else str(run_id)


def get_name() -> str | None:
    context = _context()
    return None if context is None else getattr(context.task_run, "name", None)


def get_task_name() -> str | None:
    context = _context()
    if context is None:
        return None
    if context.task is not None:
        return str(context.task.name)
    return getattr(context.task_run, "task_name", None)


def get_parameters() -> dict[str, Any]:
    context = _context()
    return {} if context is None else dict(context.parameters)


def get_tags() -> list[str]:
    """The task's tags and those of `with tags(...)` where the run was made."""
    context = _context()
    return [] if context is None else list(getattr(context.task_run, "tags", None) or [])


def get_run_count() -> int:
    """1 on the first attempt; 0 outside a task run, as in Prefect."""
    context = _context()
    return 0 if context is None else getattr(context.task_run, "run_count", 0)


def _none() -> None:
    """No server here: no URLs."""
    return None


FIELDS: Fields = {"id": get_id, "tags": get_tags, "name": get_name, "parameters": get_parameters,
                  "run_count": get_run_count, "task_name": get_task_name, "api_url": _none, "ui_url": _none}


def __getattr__(name: str) -> Any:
    return attribute(__name__, "TASK_RUN", FIELDS, name)


def __dir__() -> list[str]:
    return sorted(__all__)
