"""The run that code is executing in, for `procflow.runtime` (Prefect's `prefect.runtime`).

Whoever executes a task run sets `current_task_run` around the call: a worker process, a
runner thread, a Dask worker or the flow itself (a direct call). The flow run in progress
is `context.current_flow` in the flow's process; in a worker only its name travels, with
the task run. While a `task_run_name` or `flow_run_name` function names a run, the run
it names is current (its parameters are known, its name and id not yet).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import inspect
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, ClassVar, NamedTuple

from .run_ids import task_run_uuid
from .shapes import Args, Kwargs

if TYPE_CHECKING:
    from .messages import RunIdentity


class TaskRunInfo(NamedTuple):
    run_id: int | None  # the engine's (`run_ids.py`); None while a run-name function names it
    name: str | None
    task_name: str
    flow_run_name: str | None
    fn: Callable[..., Any]
    args: Args
    kwargs: Kwargs
    run_count: int = 1  # this attempt: 1, then 2 on the first retry (Prefect's `task_run.run_count`)
    flow_run_count: int = 1  # the attempt of the flow run it belongs to
    tags: tuple[str, ...] = ()  # its task's and those of `with tags(...)` where it was made
    transaction: Any = None  # its `task_transactions.RunTransaction` (None: one of its own if asked for)
    flow_run_id: str | None = None  # its flow run's id (Prefect's `task_run.flow_run_id`), in a worker too
    started: float = 0.0  # time.time() when this attempt began, where it runs

    @classmethod
    def of(cls, who: RunIdentity, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> TaskRunInfo:
        return cls(who.run_id, who.run_name, who.task_name, who.flow_run_name, fn, args, kwargs, who.attempt,
                   who.flow_attempt, who.tags, who.transaction, who.flow_run_id, time.time())

    @property
    def id(self) -> uuid.UUID | None:
        """Prefect's `task_run.id`: a UUID no other run has, in any process."""
        return None if self.run_id is None else task_run_uuid(self.run_id)

    @property
    def state_name(self) -> str:
        """Prefect's, inside the run: "Running" on the first attempt, "Retrying" on the others."""
        return "Running" if self.run_count <= 1 else "Retrying"

    def parameters(self) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults included (as Prefect reports them)."""
        try:
            bound = inspect.signature(self.fn).bind_partial(*self.args, **self.kwargs)
        except (TypeError, ValueError):
            return {}
        bound.apply_defaults()
        return dict(bound.arguments)


class FlowRunInfo(NamedTuple):
    name: str | None
    flow_name: str | None
    parameters: dict[str, Any]
    run_count: int = 1


current_task_run: contextvars.ContextVar[TaskRunInfo | None] = contextvars.ContextVar(
    "procflow_task_run", default=None)
# A task run that submitted runs itself where no flow is open (`context.py`): run id -> what
# ends them, called with whether the run failed when the run ends here (`execution.run_current`).
own_runs: dict[int, Callable[[bool], None]] = {}
# The flow run whose code runs in this context (a `context.FlowContext`); set by flows.py.
current_flow: contextvars.ContextVar[Any] = contextvars.ContextVar("procflow_flow", default=None)
naming_flow_run: contextvars.ContextVar[FlowRunInfo | None] = contextvars.ContextVar(
    "procflow_naming_flow_run", default=None)


def call_naming(variable: contextvars.ContextVar[Any], info: Any, name_function: Callable[[], Any]) -> str:
    """A run-name function's result, called with the run it names current."""
    token = variable.set(info)
    try:
        return str(name_function())
    finally:
        variable.reset(token)


class _Enterable:
    """Prefect's run contexts are context managers: `with FlowRunContext.model_construct(...)`
    makes that context current inside the block (Prefect's tests and users' tests do this)."""

    _entered: ClassVar[contextvars.ContextVar[Any]]
    _tokens: list[Any]

    def __enter__(self) -> Any:
        self._tokens.append(self._entered.set(self))
        return self

    def __exit__(self, *_: Any) -> None:
        self._entered.reset(self._tokens.pop())

    @classmethod
    def model_construct(cls, **fields: Any) -> Any:
        """A context with only some fields, as pydantic's `model_construct` makes one."""
        return cls(**fields)


@dataclasses.dataclass(eq=False)
class TaskRunContext(_Enterable):
    """`get_run_context()` inside a task run (Prefect's name)."""

    task_run: Any = None  # a TaskRunInfo: .id, .name, .task_name, .flow_run_name, .run_count, .tags
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    task: Any = None  # the Task, where it is known (in the flow's process)
    _tokens: list[Any] = dataclasses.field(default_factory=list, repr=False)
    _entered: ClassVar[contextvars.ContextVar[Any]] = contextvars.ContextVar("procflow_entered_task_run",
                                                                              default=None)

    @classmethod
    def of(cls, run: TaskRunInfo) -> TaskRunContext:
        return cls(run, run.parameters())

    @property
    def start_time(self) -> datetime.datetime | None:
        """Prefect's: when the run's current attempt began (None for a context made by hand)."""
        started = getattr(self.task_run, "started", 0.0)
        return datetime.datetime.fromtimestamp(started, datetime.timezone.utc) if started else None

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """Prefect's `TaskRunContext.get()`: the task run in progress here, else None."""
        entered: TaskRunContext | None = cls._entered.get()
        if entered is not None:
            return entered
        run = current_task_run.get()
        return None if run is None or run.run_id is None else cls.of(run)


@dataclasses.dataclass(eq=False)
class FlowRunContext(_Enterable):
    """`get_run_context()` in a flow's own code (Prefect's name): its `FlowRun` record and its Flow."""

    flow_run: Any = None
    flow: Any = None
    parameters: dict[str, Any] | None = None  # None: the record's
    _tokens: list[Any] = dataclasses.field(default_factory=list, repr=False)
    _entered: ClassVar[contextvars.ContextVar[Any]] = contextvars.ContextVar("procflow_entered_flow_run",
                                                                              default=None)

    def __post_init__(self) -> None:
        if self.parameters is None:
            self.parameters = dict(getattr(self.flow_run, "parameters", None) or {})

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """Prefect's `FlowRunContext.get()`: the flow run whose code runs here, else None."""
        entered: FlowRunContext | None = cls._entered.get()
        if entered is not None:
            return entered
        context = current_flow.get()
        return None if context is None else cls(context.flow_run, context.flow, context.flow_run.parameters)
