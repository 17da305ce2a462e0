"""`Task` and `@task`: options, and `.submit()` / `.map()` / direct calls turned into runs.

`.submit()` walks the arguments once for futures (`resolve.collect`), names the run,
and hands an `Entry` to the engine. `.map()` zips its iterables, passes `unmapped(...)`
and scalars whole, makes each item's futures dependencies of that child only, and
gives `wait_for` to every child. A direct call inside a flow runs in the caller's
thread after its upstreams finish, as in Prefect.

`wait_for` accepts futures, lists of futures and `allow_failure(...)`; other objects
in it are ignored, as Prefect does (a value returned by a direct call is already done).
"""

from __future__ import annotations

import copy
import datetime
import functools
import inspect
from typing import Any, Callable, Coroutine, Generic, Iterable, Literal, ParamSpec, TypeVar, overload


from . import caching, direct, hooks, mapping, options, task_generators
from .annotations import unmapped
from .context import FlowContext, context_or_detached
from .entries import NO_UPSTREAM, Entry
from .futures import FutureList
from .task_future import TaskFuture
from .resolve import Found, edges, skeleton, wait_futures
from .caching import NotSet, TaskCaching
from .utilities.hashing import hash_objects
from .states import State
from .shapes import Args, Kwargs, Hooks
from .signatures import CallSignature
from .run_names import task_run_name
from .option_sets import Option, TaskOptions
from .task_transactions import RunTransaction, made_here, makes_here

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Task(hooks.TaskHookMethods, caching.TaskCachingAttributes, Generic[P, R]):
    """A function that runs as task runs: `.submit()`, `.map()`, or a direct call."""

    def __init__(self, fn: Callable[P, R], name: str | None = None, description: str | None = None,
                 tags: Iterable[str] | None = None, version: str | None = None, cache_policy: Any = NotSet,
                 cache_key_fn: Callable[..., str | None] | None = None,
                 cache_expiration: datetime.timedelta | None = None,
                 task_run_name: str | Callable[[], str] | None = None, retries: int | None = None,
                 retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
                 retry_jitter_factor: float | None = None, persist_result: bool | None = None,
                 result_storage: Any = None, result_serializer: Any = None, result_storage_key: str | None = None,
                 cache_result_in_memory: bool = True, timeout_seconds: float | None = None,
                 log_prints: bool | None = None, refresh_cache: bool | None = None,
                 on_completion: Hooks | None = None, on_failure: Hooks | None = None,
                 on_running: Hooks | None = None, on_rollback: Hooks | None = None,
                 on_commit: Hooks | None = None,
                 retry_condition_fn: Callable[..., bool] | None = None,
                 viz_return_value: Any = None, asset_deps: Any = None) -> None:
        given = dict(locals())
        del given["self"], given["fn"]
        fn, method = options.unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@task needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)  # first: what it copies of `fn.__dict__` (a flow's) is replaced below
        self.fn, self._method = fn, method
        given["name"] = options.name("task", name) or str(getattr(fn, "__name__", "task"))
        given["description"] = description or inspect.getdoc(fn)
        self.options = TaskOptions.of(**given)
        self.task_key = caching.task_key(fn)
        self._call = CallSignature("task", self.name, fn)
        self._signature = self._call.signature

    # Prefect's attributes, each a field of the frozen `options` (assigning one replaces it)
    name, description, version, tags = Option[str](), Option[str | None](), Option[str | None](), Option[set[str]]()
    retries, retry_delay_seconds, retry_jitter_factor = Option[int](), Option[Any](), Option[float | None]()
    timeout_seconds, task_run_name, log_prints = Option[float | None](), Option[Any](), Option[bool | None]()
    retry_condition_fn, caching = Option[Callable[..., bool] | None](), Option[TaskCaching]()
    state_hooks = Option[dict[str, list[Callable[..., Any]]]]()
    result_serializer, cache_result_in_memory = Option[Any](), Option[bool]()
    viz_return_value, asset_deps = Option[Any](), Option[Any]()

    @functools.cached_property
    def source_code(self) -> str | None:
        """The task function's source (Prefect's attribute), None when Python cannot find it."""
        try:
            return inspect.getsource(self.fn)
        except (OSError, TypeError):
            return None

    def with_options(self, *, name: str | None = None, description: str | None = None,
                     tags: Iterable[str] | None = None, cache_policy: Any = NotSet,
                     cache_key_fn: Callable[..., str | None] | None = None, task_run_name: Any = NotSet,
                     cache_expiration: datetime.timedelta | None = None, retries: Any = NotSet,
                     retry_delay_seconds: Any = NotSet, retry_jitter_factor: Any = NotSet,
                     persist_result: Any = NotSet, result_storage: Any = NotSet, result_serializer: Any = NotSet,
                     result_storage_key: Any = NotSet, cache_result_in_memory: bool | None = None,
                     timeout_seconds: float | None = None, log_prints: Any = NotSet, refresh_cache: Any = NotSet,
                     on_completion: Hooks | None = None, on_failure: Hooks | None = None,
                     on_running: Hooks | None = None,
                     retry_condition_fn: Callable[..., bool] | None = None,
                     viz_return_value: Any = None, asset_deps: Any = None) -> Task[P, R]:
        """A copy with some options changed, as Prefect's (`TaskOptions.changed`); a bound
        method stays bound."""
        given = dict(locals())
        del given["self"]
        made = copy.copy(self)
        made.options = self.options.changed(given)
        return made

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    # A task defined in a class, used on an instance (`self.scale.submit(x)`), as in Prefect:
    # the instance is passed as the first argument of each call, so each run gets its state
    # as of that call (the function itself is sent to workers once).
    _instance: Any = None

    def __get__(self, instance: Any, owner: Any = None) -> Task[P, R]:
        target = options.bound_target(self._method, instance, owner)
        if target is None:
            return self
        bound = copy.copy(self)
        bound._instance = target
        return bound

    def _with_instance(self, args: Args, whole: bool = False) -> tuple[Any, ...]:
        if self._instance is None:
            return args
        return (unmapped(self._instance) if whole else self._instance, *args)

    # -- parameters -------------------------------------------------------------------

    def _check(self, args: Args, kwargs: Kwargs) -> None:
        """Reject arguments the function would refuse, before anything runs."""
        self._call.check(self.name, args, kwargs)

    def _bind(self, args: Args, kwargs: Kwargs) -> inspect.BoundArguments:
        return self._call.bind(self.name, args, kwargs)

    def parameters_of(self, args: Args, kwargs: Kwargs) -> dict[str, Any]:
        return self._call.parameters(self.name, args, kwargs)

    # -- submit / map ---------------------------------------------------------------------

    # The function's own signature, for editors (signature help, the future's result type), as
    # Prefect's overloads keep it; calls with `return_state=` or `wait_for=` take the ones after.
    @overload
    def submit(self: Task[P, Coroutine[Any, Any, T]],  # type: ignore[overload-overlap]
               *args: P.args, **kwargs: P.kwargs) -> TaskFuture[T]: ...

    @overload
    def submit(self: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]: ...

    @overload
    def submit(self, *args: Any, return_state: Literal[False] = False, wait_for: Any = None,
               **kwargs: Any) -> TaskFuture[R]: ...

    @overload
    def submit(self, *args: Any, return_state: Literal[True], wait_for: Any = None, **kwargs: Any) -> State: ...

    # mypy: P.kwargs might hold `return_state`, which the implementation takes apart (as Prefect's)
    def submit(self: Task[Any, Any], *args: Any, return_state: bool = False,  # type: ignore[misc]
               wait_for: Any = None, **kwargs: Any) -> TaskFuture[Any] | State:
        """Schedule one run; returns its future at once (`return_state=True`: waits, returns its state)."""
        args = self._with_instance(args)
        context = context_or_detached()
        self._check(args, kwargs)
        waits = wait_futures(wait_for)
        entry = self._entry(context, args, kwargs, waits, None, made_here(self))
        future = context.submit([entry], mapped=False)[0]
        if return_state:
            future.wait()
            return future.state
        return future

    @overload
    def map(self, *args: Any, return_state: Literal[False] = False, wait_for: Any = None,
            **kwargs: Any) -> FutureList: ...

    @overload
    def map(self, *args: Any, return_state: Literal[True], wait_for: Any = None, **kwargs: Any) -> list[State]: ...

    def map(self, *args: Any, return_state: bool = False, wait_for: Any = None,
            **kwargs: Any) -> FutureList | list[State]:
        """One run per item of the iterable arguments (zipped); `return_state=True`: waits for
        them all, returns their states."""
        futures = self._map(args, kwargs, wait_for)
        if return_state:
            futures.wait()
            return [future.state for future in futures]
        return futures

    def _map(self, args: Args, kwargs: Kwargs, wait_for: Any) -> FutureList:
        args = self._with_instance(args, whole=True)
        context = context_or_detached()
        iterables, statics = mapping.split_mapped(self.name, self._signature, self._bind(args, kwargs).arguments)
        waits = wait_futures(wait_for)
        group = next(context.map_groups)
        transaction = makes_here(self)
        with mapping.collector_paused():  # 100 000 children: full collections would rescan them all, repeatedly
            entries = [self._entry(context, child_args, child_kwargs, waits, group, transaction())
                       for child_args, child_kwargs in mapping.children(self._signature, iterables, statics)]
        return FutureList(context.submit(entries, mapped=True))

    def _entry(self, context: FlowContext, args: Args, kwargs: Kwargs, waits: Found, group: int | None,
               transaction: RunTransaction | None) -> Entry:
        made_args, made_kwargs, found = skeleton(args, kwargs)
        name, provisional = task_run_name(self, context, args, kwargs, bool(found))  # a template sees the futures
        record = context.new_record(self, name, edges(found, waits), group)
        upstream = found + waits if found or waits else NO_UPSTREAM
        return Entry(record, self, made_args, made_kwargs, upstream, len(found), context.tracker,
                     name_pending=provisional, transaction=transaction)

    # -- direct call ---------------------------------------------------------------------------

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(self, *args: Any, wait_for: Any = None, return_state: bool = False, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside a flow: wait for upstreams, run here, return the value (`direct.py`). Outside:
        call the function. An `async def` task gives a coroutine, in a sync flow too (Prefect 3)."""
        wait_for = kwargs.pop("wait_for", None)
        return_state = kwargs.pop("return_state", False)
        args = self._with_instance(args)
        if self.isgenerator:  # a run that lives while it yields (`task_generators.py`)
            driver = task_generators.acall if self.isasync else task_generators.call
            return driver(self, args, kwargs, wait_for, return_state)
        if self.isasync:
            return direct.acall(self, args, kwargs, wait_for, return_state)
        return direct.call(self, args, kwargs, wait_for, return_state)

    @property
    def isasync(self) -> bool:
        """An `async def` task, a generator one too (Prefect's attribute)."""
        return inspect.iscoroutinefunction(self.fn) or inspect.isasyncgenfunction(self.fn)

    @property
    def isgenerator(self) -> bool:
        """A task whose function yields, `async def` or not (Prefect's attribute)."""
        return inspect.isgeneratorfunction(self.fn) or inspect.isasyncgenfunction(self.fn)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Prefect's retry backoff: `retry_delay_seconds=exponential_backoff(backoff_factor=10)`
    waits 10, 20, 40, ... seconds before each retry (at most 50 delays, as Prefect)."""
    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2 ** attempt for attempt in range(min(retries, 50))]

    return delays


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A `cache_key_fn`, as Prefect's: the task's key, its function's byte code and its arguments,
    hashed, so a run with the same inputs reuses a completed one; None (no caching) when the
    arguments cannot be serialized."""
    return hash_objects(context.task.task_key, context.task.fn.__code__.co_code.hex(), arguments)


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...


@overload
def task(*, name: str | None = None, description: str | None = None, tags: Iterable[str] | None = None,
         version: str | None = None, cache_policy: Any = NotSet, cache_key_fn: Callable[..., str | None] | None = None,
         cache_expiration: datetime.timedelta | None = None, task_run_name: str | Callable[[], str] | None = None,
         retries: int | None = None,
         retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
         retry_jitter_factor: float | None = None, persist_result: bool | None = None, result_storage: Any = None,
         result_storage_key: str | None = None, result_serializer: Any = None, cache_result_in_memory: bool = True,
         timeout_seconds: float | None = None, log_prints: bool | None = None, refresh_cache: bool | None = None,
         on_completion: Hooks | None = None, on_failure: Hooks | None = None,
         on_running: Hooks | None = None, retry_condition_fn: Callable[..., bool] | None = None,
         viz_return_value: Any = None, asset_deps: Any = None) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, *, name: Any = None, description: Any = None, tags: Any = None, version: Any = None,
         cache_policy: Any = NotSet, cache_key_fn: Any = None, cache_expiration: Any = None, task_run_name: Any = None,
         retries: Any = None, retry_delay_seconds: Any = None, retry_jitter_factor: Any = None,
         persist_result: Any = None, result_storage: Any = None, result_storage_key: Any = None,
         result_serializer: Any = None, cache_result_in_memory: Any = True, timeout_seconds: Any = None,
         log_prints: Any = None, refresh_cache: Any = None, on_completion: Any = None, on_failure: Any = None,
         on_running: Any = None, retry_condition_fn: Any = None, viz_return_value: Any = None,
         asset_deps: Any = None) -> Any:
    """`@task` or `@task(retries=2, ...)`: Prefect's keywords, each checked when the decorator runs."""
    chosen = dict(locals())
    del chosen["__fn"]
    if __fn is not None:
        return Task(__fn, **chosen)
    return lambda fn: Task(fn, **chosen)
