"""procflow: Prefect's @flow / @task API on a reusable pool of local worker processes.

The names below load on first use (PEP 562): a worker process imports `procflow.worker`,
which runs this file, and should not pay for the engine, the console and the runners it
never uses (~0.25 s of each worker's start here). `from procflow import flow, task`
works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import states, task_runners
    from .annotations import allow_failure, quote, unmapped
    from .context import tags
    from .flows import Flow, flow, last_flow_run
    from .futures import FutureList, PrefectFuture, PrefectFutureList, as_completed, wait
    from .task_future import TaskFuture
    from .records import FlowRun, TaskRun
    from .runlog import get_run_logger
    from .states import Cancelled, Completed, Crashed, Failed, Pending, State, StateType
    from .exceptions import MappingLengthMismatch, MappingMissingIterable, MissingContextError, UpstreamTaskError
    from .tasks import Task, task

__version__ = "0.1.0"

_HOMES = {
    "states": ("Cancelled", "Completed", "Crashed", "Failed", "Pending", "State", "StateType"),
    "exceptions": ("MappingLengthMismatch", "MappingMissingIterable", "MissingContextError", "UpstreamTaskError"),
    "annotations": ("allow_failure", "quote", "unmapped"),
    "context": ("tags",),
    "flows": ("Flow", "flow", "last_flow_run"),
    "futures": ("FutureList", "PrefectFuture", "PrefectFutureList", "as_completed", "wait"),
    "task_future": ("TaskFuture",),
    "records": ("FlowRun", "TaskRun"),
    "runlog": ("get_run_logger",),
    "tasks": ("Task", "task"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
_SUBMODULES = ("states", "task_runners")

__all__ = [
    "flow", "task", "Flow", "Task", "unmapped", "allow_failure", "quote", "wait", "as_completed",
    "get_run_logger", "TaskFuture", "PrefectFuture", "FutureList", "PrefectFutureList", "State", "StateType",
    "Completed", "Failed", "Crashed", "Cancelled", "Pending", "FlowRun", "TaskRun", "UpstreamTaskError",
    "MappingLengthMismatch", "MappingMissingIterable", "MissingContextError", "task_runners", "states", "last_flow_run",
    "tags",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value: Any = importlib.import_module(f".{name}", __name__)
    elif name in _HOME_OF:
        value = getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
