"""`Flow` and `@flow`: a flow's options, naming and hooks; its runs are `flow_runs.py`'s."""

from __future__ import annotations

import ast
import copy
import datetime
import enum
import functools
import inspect
import pathlib
import uuid
from typing import Any, Callable, Generic, ParamSpec, TypeVar, overload

from . import entrypoints, flow_generators, flow_runs, hooks, options
from .entrypoints import import_object
from .exceptions import MissingFlowError, ScriptError
from .caching import NotSet
from .flow_deadline import FlowTimedOut
from .flow_runs import last_flow_run, set_last_flow_run
from .interrupts import second_interrupt_exits_at_once
from .flow_states import final_state
from .parameters import ParameterValidator
from .records import FlowRun
from .runlog import flow_emitter
from .runners.base import Runner
from .runners.processes import ProcessPoolTaskRunner
from .shapes import Hooks
from .signatures import CallSignature
from .option_sets import FlowOptions, Option
from .states import State
from .utilities.hashing import file_hash

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["Flow", "FlowDecorator", "FlowTimedOut", "final_state", "flow", "import_object", "is_entrypoint_async",
           "last_flow_run", "load_flow_arguments_from_entrypoint", "load_flow_from_entrypoint",
           "load_function_and_convert_to_flow", "load_placeholder_flow", "safe_load_flow_from_entrypoint",
           "second_interrupt_exits_at_once", "set_last_flow_run"]


class Flow(hooks.FlowHookMethods, Generic[P, R]):
    """A function whose calls are flow runs."""

    def __init__(self, fn: Callable[P, R], name: str | None = None, version: str | None = None,
                 flow_run_name: str | Callable[[], str] | None = None, retries: int | None = None,
                 retry_delay_seconds: float | None = None, task_runner: Runner | type | None = None,
                 description: str | None = None, timeout_seconds: float | None = None,
                 validate_parameters: bool = True, persist_result: bool | None = None, result_storage: Any = None,
                 result_serializer: Any = None, cache_result_in_memory: bool = True, log_prints: bool | None = None,
                 on_completion: Hooks | None = None, on_failure: Hooks | None = None,
                 on_cancellation: Hooks | None = None, on_crashed: Hooks | None = None,
                 on_running: Hooks | None = None) -> None:
        given = dict(locals())
        del given["self"], given["fn"]
        fn, method = options.unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)  # first: what it copies of `fn.__dict__` (a flow's) is replaced below
        self.fn, self._method = fn, method
        # Prefect's default: the function's name with dashes (`my_flow` is flow 'my-flow')
        given["name"] = options.name("flow", name) or str(getattr(fn, "__name__", "flow")).replace(
            "_", "-").replace("<lambda>", "unknown-lambda")
        given["description"] = description or inspect.getdoc(fn)
        given["version"] = version or _source_file_hash(fn)
        self.options = FlowOptions(**given)
        self.last_run: FlowRun | None = None
        self._call = CallSignature("flow", self.name, fn)
        self._signature = self._call.signature
        self._validator = ParameterValidator(fn, self._signature)
        if self.should_validate_parameters:
            self._validator.check_names()

    # Prefect's attributes, each a field of the frozen `options` (assigning one replaces it)
    name, version, description = Option[str](), Option[str | None](), Option[str | None]()
    flow_run_name, task_runner, log_prints = Option[Any](), Option[Any](), Option[bool | None]()
    retries, retry_delay_seconds, timeout_seconds = Option[int](), Option[float](), Option[float | None]()
    should_validate_parameters = Option[bool]("validate_parameters")
    persist_result, result_storage, storage_path = Option[bool | None](), Option[Any](), Option[pathlib.Path | None]()
    result_serializer, cache_result_in_memory = Option[Any](), Option[bool]()
    state_hooks = Option[dict[str, list[Callable[..., Any]]]]()

    def with_options(self, *, name: str | None = None, version: str | None = None, retries: int | None = None,
                     retry_delay_seconds: float | None = None, description: str | None = None,
                     flow_run_name: Any = None, task_runner: Runner | type | None = None,
                     timeout_seconds: float | None = None, validate_parameters: bool | None = None,
                     persist_result: Any = NotSet, result_storage: Any = NotSet, result_serializer: Any = NotSet,
                     cache_result_in_memory: bool | None = None, log_prints: Any = NotSet,
                     on_completion: Hooks | None = None, on_failure: Hooks | None = None,
                     on_cancellation: Hooks | None = None, on_crashed: Hooks | None = None,
                     on_running: Hooks | None = None) -> Flow[P, R]:
        """A copy with some options changed, as Prefect's (`FlowOptions.changed`); a bound
        method stays bound."""
        given = dict(locals())
        del given["self"]
        made = copy.copy(self)
        made.options, made.last_run = self.options.changed(given), None
        if made.should_validate_parameters:
            made._validator.check_names()
        return made

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Prefect's: `parameters` converted by the function's annotations (`parameters.py`);
        `ParameterTypeError` for a value that cannot be."""
        return self._validator.validate(parameters)

    def _converted_defaults(self, defaults: dict[str, Any]) -> dict[str, Any]:
        return self._validator.convert_defaults(defaults)

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Prefect's: the parameters as JSON-ready values; one that is not (or a future, a state) is `"<TypeName>"`."""
        return {name: _jsonable(value) for name, value in parameters.items()
                if not (self._instance is not None and value is self._instance)}

    def _call_hooks(self, flow_run: FlowRun, state: State) -> None:
        due = hooks.hooks_for(self.state_hooks, state)
        if due:
            hooks.call_hooks(due, self, flow_run, state, flow_emitter(flow_run.name))

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    # A flow defined in a class, called on an instance (see Task.__get__): the bound copy
    # passes the instance first and records `last_run` on the flow it was made from too.
    _instance: Any = None
    _unbound: Flow[..., Any] | None = None

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
        if self.isgenerator:  # a flow run that lives while it yields (`flow_generators.py`)
            driver = flow_generators.arun if self.isasync else flow_generators.run
            return driver(self, args, kwargs, wait_for, return_state)
        if self.isasync:
            return flow_runs.run_async(self, args, kwargs, wait_for, return_state)
        return flow_runs.run_sync(self, args, kwargs, wait_for, return_state)

    @property
    def isasync(self) -> bool:
        """An `async def` flow, a generator one too (Prefect's attribute)."""
        return inspect.iscoroutinefunction(self.fn) or inspect.isasyncgenfunction(self.fn)

    @property
    def isgenerator(self) -> bool:
        """A flow whose function yields, `async def` or not (Prefect's attribute)."""
        return inspect.isgeneratorfunction(self.fn) or inspect.isasyncgenfunction(self.fn)

    def _make_runner(self) -> Runner:
        runner: Runner | type | None = self.task_runner
        if runner is None:
            return ProcessPoolTaskRunner()
        made: Runner = runner() if isinstance(runner, type) else runner
        return made


def _source_file_hash(fn: Callable[..., Any]) -> str | None:
    """Prefect's default version: a hash of the file that defines the function (None without one)."""
    try:
        path = inspect.getsourcefile(fn)
        return None if path is None else file_hash(path)
    except (OSError, TypeError):  # a REPL's "<stdin>", a builtin
        return None


class FlowDecorator:
    """`@flow` or `@flow(task_runner=..., log_prints=True, ...)` (an object, as Prefect's `flow` is)."""

    @overload
    def __call__(self, __fn: Callable[P, R]) -> Flow[P, R]: ...

    @overload
    def __call__(self, __fn: None = None, *, name: str | None = None, version: str | None = None,
                 flow_run_name: str | Callable[[], str] | None = None, retries: int | None = None,
                 retry_delay_seconds: float | None = None, task_runner: Runner | type | None = None,
                 description: str | None = None, timeout_seconds: float | None = None,
                 validate_parameters: bool = True, persist_result: bool | None = None, result_storage: Any = None,
                 result_serializer: Any = None, cache_result_in_memory: bool = True, log_prints: bool | None = None,
                 on_completion: Hooks | None = None, on_failure: Hooks | None = None,
                 on_cancellation: Hooks | None = None, on_crashed: Hooks | None = None,
                 on_running: Hooks | None = None) -> Callable[[Callable[P, R]], Flow[P, R]]: ...

    def __call__(self, __fn: Any = None, *, name: Any = None, version: Any = None, flow_run_name: Any = None,
                 retries: Any = None, retry_delay_seconds: Any = None, task_runner: Any = None,
                 description: Any = None, timeout_seconds: Any = None, validate_parameters: Any = True,
                 persist_result: Any = None, result_storage: Any = None, result_serializer: Any = None,
                 cache_result_in_memory: Any = True, log_prints: Any = None, on_completion: Any = None,
                 on_failure: Any = None, on_cancellation: Any = None, on_crashed: Any = None,
                 on_running: Any = None) -> Any:
        chosen = dict(locals())
        del chosen["self"], chosen["_FlowDecorator__fn"]
        if __fn is not None:
            return Flow(__fn, **chosen)
        return lambda fn: Flow(fn, **chosen)


flow = FlowDecorator()


# -- flows named by an entrypoint (`entrypoints.py`), as Prefect's deployment tools load them -----

_ARGUMENTS = ("name", "version", "retries", "retry_delay_seconds", "description", "timeout_seconds",
              "validate_parameters", "persist_result", "cache_result_in_memory", "log_prints")


def load_flow_from_entrypoint(entrypoint: str, use_placeholder_flow: bool = True) -> Flow[..., Any]:
    """Prefect's: the flow at `path.py:name`, `path.py:Class.method` or `module.name`, its
    script run. A script that fails to run (a missing import) gives, with
    `use_placeholder_flow`, the flow as `safe_load_flow_from_entrypoint` makes it."""
    where, parts = entrypoints.split(entrypoint)
    try:
        found = import_object(entrypoint)
    except AttributeError as error:
        raise MissingFlowError(f"Flow function with name {'.'.join(parts)!r} not found in {where!r}. ") from error
    except ScriptError:
        if not use_placeholder_flow:
            raise
        found = safe_load_flow_from_entrypoint(entrypoint)
        if found is None:
            raise
    if not isinstance(found, Flow):
        raise MissingFlowError(f"Function with name {'.'.join(parts)!r} is not a flow. Make sure that it is "
                               "decorated with '@flow'.")
    return found


def load_function_and_convert_to_flow(entrypoint: str) -> Flow[..., Any]:
    """Prefect's: the function at the entrypoint, made a flow (with `log_prints=True`) if it is not one."""
    where, parts = entrypoints.split(entrypoint)
    try:
        found = import_object(entrypoint)
    except AttributeError as error:
        raise RuntimeError(f"Function with name {'.'.join(parts)!r} not found in {where!r}.") from error
    return found if isinstance(found, Flow) else Flow(found, log_prints=True)


def safe_load_flow_from_entrypoint(entrypoint: str) -> Flow[..., Any] | None:
    """Prefect's: the flow made from the script's source without running the script: its
    imports that work, its assignments, functions and classes; annotations and defaults that
    need what is missing are left out. None when the flow still cannot be made (its decorator
    needs what is missing); `ValueError` when the script has no such function."""
    node, source, parts = entrypoints.definition(entrypoint)
    namespace = entrypoints.safe_namespace(source, entrypoints.split(entrypoint)[0] if ":" in entrypoint else None)
    found: Any = namespace.get(parts[0])
    if found is None:
        return entrypoints.sanitized_function(node, namespace) if not isinstance(node, ast.ClassDef) else None
    for part in parts[1:]:
        found = getattr(found, part, None)
    return found if isinstance(found, Flow) else None


def load_flow_arguments_from_entrypoint(entrypoint: str,
                                        arguments: list[str] | set[str] | None = None) -> dict[str, Any]:
    """Prefect's: the `@flow(...)` keywords of the entrypoint's function, read from its source
    (as text), with `name` from the function's name when it gives none."""
    node, _, _ = entrypoints.definition(entrypoint)
    wanted = set(_ARGUMENTS if arguments is None else arguments)
    found: dict[str, Any] = dict(entrypoints.decorator_arguments(entrypoint, wanted))
    if "name" in wanted and "name" not in found:
        found["name"] = node.name.replace("_", "-")
    return found


def is_entrypoint_async(entrypoint: str) -> bool:
    """Prefect's: whether the entrypoint's function is an `async def`."""
    return isinstance(entrypoints.definition(entrypoint)[0], ast.AsyncFunctionDef)


def load_placeholder_flow(entrypoint: str, raises: Exception) -> Flow[..., Any]:
    """Prefect's: a flow with the entrypoint's `@flow(...)` arguments whose call raises `raises`."""
    def placeholder(*args: Any, **kwargs: Any) -> Any:
        raise raises

    async def async_placeholder(*args: Any, **kwargs: Any) -> Any:
        raise raises

    made = load_flow_arguments_from_entrypoint(entrypoint)
    fn = async_placeholder if is_entrypoint_async(entrypoint) else placeholder
    return Flow(fn, name=made.pop("name"), description=made.get("description"), version=made.get("version"))


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A value as JSON holds it: containers walked (to a depth of 32), anything else `"<TypeName>"`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 32 and isinstance(value, dict):
        return {str(key): _jsonable(item, depth + 1) for key, item in value.items()}
    if depth < 32 and isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item, depth + 1) for item in value]
    for kind in (datetime.datetime, datetime.date, datetime.time):
        if isinstance(value, kind):
            return value.isoformat()
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, depth + 1)
    if isinstance(value, (pathlib.PurePath, uuid.UUID)):
        return str(value)
    dump = getattr(value, "model_dump", None)  # a pydantic model
    if callable(dump) and not isinstance(value, State):
        try:
            return _jsonable(dump(mode="json"), depth + 1)
        except Exception:  # noqa: BLE001 - not one after all
            pass
    return f"<{type(value).__name__}>"
