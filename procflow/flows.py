"""`Flow` and `@flow`: a flow's options, naming and hooks; its runs are `flow_runs.py`'s."""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any, Callable, Generic, ParamSpec, TypeVar, overload

from . import caching, flow_runs, hooks, options, settings
from .current import FlowRunInfo, call_naming, naming_flow_run
from .flow_names import random_flow_run_name
from .flow_runs import FlowTimedOut, final_state, last_flow_run, second_interrupt_exits_at_once, set_last_flow_run
from .records import FlowRun
from .runlog import flow_emitter
from .runners.base import Runner
from .runners.processes import ProcessPoolTaskRunner
from .states import State
from .utilities.hashing import file_hash

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["Flow", "FlowTimedOut", "final_state", "flow", "last_flow_run", "second_interrupt_exits_at_once",
           "set_last_flow_run"]


class Flow(hooks.FlowHookMethods, Generic[P, R]):
    """A function whose calls are flow runs."""

    def __init__(self, fn: Callable[P, R], name: str | None = None, task_runner: Runner | type | None = None,
                 log_prints: bool | None = None, flow_run_name: str | Callable[[], str] | None = None,
                 timeout_seconds: float | None = None, retries: int | None = None,
                 retry_delay_seconds: float | None = None, on_completion: list[Callable] | None = None,
                 on_failure: list[Callable] | None = None,
                 on_running: list[Callable] | None = None, on_crashed: list[Callable] | None = None,
                 on_cancellation: list[Callable] | None = None, **prefect_options: Any) -> None:
        fn, self._method = options.unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {type(fn).__name__}")
        self.fn = fn
        # Prefect's default: the function's name with dashes (`my_flow` is flow 'my-flow')
        self.name: str = options.flow_name(options.name("flow", name) or str(getattr(fn, "__name__", "flow"))
                                           .replace("_", "-").replace("<lambda>", "unknown-lambda"))
        owner = f"flow {self.name!r}"
        self.task_runner = options.task_runner(owner, task_runner)
        self.log_prints = options.flag(owner, "log_prints", log_prints)
        self.flow_run_name = options.text_or_callable(owner, "flow_run_name", flow_run_name)
        self.timeout_seconds = options.timeout(owner, "timeout_seconds", timeout_seconds)
        # None: the settings' defaults, read now, as Prefect does (`settings.py`)
        self.retries = options.whole(owner, "retries", settings.PREFECT_FLOW_DEFAULT_RETRIES.value()
                                     if retries is None else retries)
        if retry_delay_seconds is None:
            retry_delay_seconds = settings.PREFECT_FLOW_DEFAULT_RETRY_DELAY_SECONDS.value()
        self.retry_delay_seconds = options.seconds(owner, "retry_delay_seconds", retry_delay_seconds) or 0
        self.state_hooks = hooks.hook_lists(owner, on_completion=on_completion, on_failure=on_failure,
                                            on_running=on_running, on_crashed=on_crashed,
                                            on_cancellation=on_cancellation)
        # for its tasks' results (`caching.py`); as in Prefect, a result_storage turns persistence on
        self.result_storage = caching.storage_path(owner, prefect_options.pop("result_storage", None))
        persist_result = options.flag(owner, "persist_result", prefect_options.pop("persist_result", None))
        self.result_serializer = prefect_options.get("result_serializer")  # without effect (options.py)
        self.persist_result = True if persist_result is None and (
            self.result_storage is not None or self.result_serializer is not None) else persist_result
        kept = options.prefect_extras(owner, prefect_options)  # Prefect's other options: see options.py
        self.description: str | None = kept["description"] or inspect.getdoc(fn)
        self.version: str | None = kept["version"] or _source_file_hash(fn)
        self.last_run: FlowRun | None = None
        self._signature = inspect.signature(fn)
        options.no_reserved_arguments(owner, self._signature)
        functools.update_wrapper(self, fn)

    def with_options(self, **options: Any) -> Flow[P, R]:
        current = {name: getattr(self, name) for name in (
            "name", "task_runner", "log_prints", "flow_run_name", "timeout_seconds", "retries", "retry_delay_seconds",
            "description", "version", "persist_result", "result_storage", "result_serializer")}
        current.update({name: list(hook_list) for name, hook_list in self.state_hooks.items()})
        current.update(options)
        made = Flow(self.fn, **current)
        made._method, made._instance = self._method, self._instance  # a bound method stays bound
        return made

    def _call_hooks(self, flow_run: FlowRun, state: State) -> None:
        due = hooks.hooks_for(self.state_hooks, state)
        if due:
            hooks.call_hooks(due, self, flow_run, state, flow_emitter(flow_run.name))

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    # A flow defined in a class, called on an instance (see Task.__get__): the bound copy
    # passes the instance first and records `last_run` on the flow it was made from too.
    _instance: Any = None
    _unbound: Flow | None = None

    def __get__(self, instance: Any, owner: Any = None) -> Flow[P, R]:
        target = options.bound_target(self._method, instance, owner)
        if target is None:
            return self
        bound = copy.copy(self)
        bound._instance, bound._unbound = target, self
        return bound

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A flow run (`flow_runs.py`); an `async def` flow gives a coroutine to await."""
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        if self.isasync:
            return flow_runs.run_async(self, args, kwargs, wait_for, return_state)
        return flow_runs.run_sync(self, args, kwargs, wait_for, return_state)

    @property
    def isasync(self) -> bool:
        """An `async def` flow (Prefect's attribute)."""
        return inspect.iscoroutinefunction(self.fn)

    def _make_runner(self) -> Runner:
        runner = self.task_runner
        if runner is None:
            return ProcessPoolTaskRunner()
        return runner() if isinstance(runner, type) else runner

    def _run_name(self, parameters: dict[str, Any]) -> str:
        template = self.flow_run_name
        if template is not None and not isinstance(template, str) and not callable(template):  # set after decorating
            raise TypeError(f"Expected string or callable for 'flow_run_name'; got {type(template).__name__} instead.")
        if template is None:
            return random_flow_run_name()
        if callable(template):  # Prefect's way: it reads the run from procflow.runtime.flow_run
            return call_naming(naming_flow_run, FlowRunInfo(None, self.name, dict(parameters)), template)
        return options.render_name(f"flow {self.name!r}", "flow_run_name", template, parameters)


def _source_file_hash(fn: Callable) -> str | None:
    """Prefect's default version: a hash of the file that defines the function (None without one)."""
    try:
        path = inspect.getsourcefile(fn)
        return None if path is None else file_hash(path)
    except (OSError, TypeError):  # a REPL's "<stdin>", a builtin
        return None


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(*, name: str | None = None, task_runner: Runner | type | None = None, log_prints: bool | None = None,
         flow_run_name: str | Callable[[], str] | None = None, timeout_seconds: float | None = None,
         retries: int | None = None, retry_delay_seconds: float | None = None, description: str | None = None,
         version: str | None = None, **prefect_options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """`@flow` or `@flow(task_runner=..., log_prints=True, ...)`."""
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)


