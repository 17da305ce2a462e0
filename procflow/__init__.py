"""procflow: Prefect's @flow / @task API on a reusable pool of local worker processes."""

from . import states, task_runners
from .annotations import allow_failure, quote, unmapped
from .context import tags
from .flows import Flow, flow, last_flow_run
from .futures import FutureList, PrefectFuture, PrefectFutureList, TaskFuture, as_completed, wait
from .records import FlowRun, TaskRun
from .runlog import get_run_logger
from .states import (Cancelled, Completed, Crashed, Failed, MappingLengthMismatch, MappingMissingIterable,
                     MissingContextError, Pending, State, StateType, UpstreamTaskError)
from .tasks import Task, task

__version__ = "0.1.0"

__all__ = [
    "flow", "task", "Flow", "Task", "unmapped", "allow_failure", "quote", "wait", "as_completed",
    "get_run_logger", "TaskFuture", "PrefectFuture", "FutureList", "PrefectFutureList", "State", "StateType",
    "Completed", "Failed", "Crashed", "Cancelled", "Pending", "FlowRun", "TaskRun", "UpstreamTaskError",
    "MappingLengthMismatch", "MappingMissingIterable", "MissingContextError", "task_runners", "states", "last_flow_run",
    "tags",
]
