"""Prefect's engine entry points for one task run (`prefect.task_engine`): `run_task_sync(task,
parameters=...)` and `run_task_async` run the task as a call would, in a flow if one is open
here, else as a task run of its own; Prefect code and tests that call them run unchanged.
Prefect's `task_run_id`, `task_run`, `dependencies` and `context` arguments are accepted and
not used: here a run's id and context are made by the run itself."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from .utilities.callables import parameters_to_args_kwargs

__all__ = ["run_generator_task_async", "run_generator_task_sync", "run_task", "run_task_async", "run_task_sync"]


def run_task_sync(task: Any, task_run_id: Any = None, task_run: Any = None, parameters: dict[str, Any] | None = None,
                  wait_for: Any = None, return_type: Literal["state", "result"] = "result",
                  dependencies: Any = None, context: Any = None) -> Any:
    """The task's result (or, with `return_type="state"`, its final State)."""
    args, kwargs = parameters_to_args_kwargs(task, parameters or {})
    return task(*args, wait_for=wait_for, return_state=return_type == "state", **kwargs)


async def run_task_async(task: Any, task_run_id: Any = None, task_run: Any = None,
                         parameters: dict[str, Any] | None = None, wait_for: Any = None,
                         return_type: Literal["state", "result"] = "result", dependencies: Any = None,
                         context: Any = None) -> Any:
    """`run_task_sync` to await; an `async def` task runs in this event loop."""
    outcome = run_task_sync(task, parameters=parameters, wait_for=wait_for, return_type=return_type)
    return await outcome if inspect.isawaitable(outcome) else outcome


def run_task(task: Any, task_run_id: Any = None, task_run: Any = None, parameters: dict[str, Any] | None = None,
             wait_for: Any = None, return_type: Literal["state", "result"] = "result",
             dependencies: Any = None, context: Any = None) -> Any:
    """As Prefect's: the task's call, which gives a coroutine for an `async def` task, a
    generator for a generator task (`task_generators.py`), else the result at once."""
    return run_task_sync(task, parameters=parameters, wait_for=wait_for, return_type=return_type)


run_generator_task_sync = run_generator_task_async = run_task  # the call gives the generator of either kind
