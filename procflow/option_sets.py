"""A task's and a flow's options: frozen dataclasses, checked once, changed by `replace`.

`@task(...)` and `@flow(...)` build one `TaskOptions` / `FlowOptions`; `__post_init__`
checks and normalises every field (`options.py` holds the checks and their texts), so a
bad value is an error naming the task or flow before anything runs. `with_options` is
`dataclasses.replace` with Prefect's rules for which arguments keep the current value
(`changed`), so it runs the same checks. The options are shallow-frozen: a task's `tags`
and its hook lists stay Prefect's mutable set and lists (`my_task.tags.add(...)`,
`@my_task.on_failure`).

`Task` and `Flow` expose each option as an attribute (`Option`). Assigning one, as
Prefect's own tests do (`my_task.task_run_name = ...`), replaces that field unchecked, as
Prefect's plain attributes are: the run that uses it finds a bad value then.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar, overload

from . import caching, hooks, options, settings
from .caching import NotSet, TaskCaching
from .results.store import storage_path

T = TypeVar("T")
Hook = Callable[..., Any]

TASK_HOOKS = ("on_completion", "on_failure", "on_running", "on_commit", "on_rollback")  # the last two: transactions
FLOW_HOOKS = ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running")


def _or_setting(value: Any, setting: Any) -> Any:
    """None given: the setting's value, read now, as Prefect reads its defaults."""
    return setting.value() if value is None else value


def _normalise(options_: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(options_, name, value)


@dataclass(frozen=True)
class TaskOptions:
    """`@task`'s options, resolved as Prefect resolves them (None: the settings' default, read now)."""

    name: str
    caching: TaskCaching
    description: str | None = None
    version: str | None = None
    tags: set[str] = field(default_factory=set)
    retries: int = 0
    retry_delay_seconds: Any = None  # seconds, a list of them, or Prefect's `exponential_backoff(...)`
    retry_jitter_factor: float | None = None
    timeout_seconds: float | None = None
    task_run_name: Any = None  # a template, a function, or None
    log_prints: bool | None = None
    retry_condition_fn: Callable[..., bool] | None = None
    on_completion: Any = None
    on_failure: Any = None
    on_running: Any = None
    on_commit: Any = None
    on_rollback: Any = None
    result_serializer: Any = None  # Prefect's options without effect here (`options.WITHOUT_EFFECT`)
    cache_result_in_memory: bool = True
    viz_return_value: Any = None
    asset_deps: Any = None
    state_hooks: dict[str, list[Hook]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = options.name("task", self.name)
        owner = f"task {name!r}"
        retries = options.whole(owner, "retries", _or_setting(self.retries, settings.PREFECT_TASK_DEFAULT_RETRIES))
        delays = _or_setting(self.retry_delay_seconds, settings.PREFECT_TASK_DEFAULT_RETRY_DELAY_SECONDS)
        if callable(delays):  # Prefect's `exponential_backoff(...)`: called with the retries
            delays = delays(retries)
        state_hooks = hooks.hook_lists(owner, **{hook: getattr(self, hook) for hook in TASK_HOOKS})
        options.prefect_extras(owner, {"result_serializer": self.result_serializer,
                                       "viz_return_value": self.viz_return_value, "asset_deps": self.asset_deps,
                                       "cache_result_in_memory": None if self.cache_result_in_memory else False})
        _normalise(self, name=name, retries=retries, tags=options.tags(owner, self.tags),
                   retry_delay_seconds=options.delays(owner, "retry_delay_seconds", delays),
                   retry_jitter_factor=options.jitter(owner, self.retry_jitter_factor),
                   timeout_seconds=options.timeout(owner, "timeout_seconds", self.timeout_seconds),
                   task_run_name=options.text_or_callable(owner, "task_run_name", self.task_run_name),
                   log_prints=options.flag(owner, "log_prints", self.log_prints),
                   retry_condition_fn=options.function(owner, "retry_condition_fn", self.retry_condition_fn),
                   state_hooks=state_hooks, **state_hooks)

    @classmethod
    def of(cls, name: str, *, cache_policy: Any = NotSet, cache_key_fn: Any = None, cache_expiration: Any = None,
           persist_result: Any = None, result_storage: Any = None, result_storage_key: Any = None,
           refresh_cache: Any = None, **given: Any) -> TaskOptions:
        """The decorator's keywords: the caching ones resolved together (`caching.py`), the rest fields."""
        owner = f"task {options.name('task', name)!r}"
        made = TaskCaching.of(owner, cache_policy=cache_policy, cache_key_fn=cache_key_fn,
                              persist_result=persist_result, result_storage=result_storage,
                              result_storage_key=result_storage_key, cache_expiration=cache_expiration,
                              refresh_cache=refresh_cache, result_serializer=given.get("result_serializer"))
        return cls(name, made, **given)

    # with_options: these keep the current value when given as None or empty (Prefect's `or`)
    _KEPT_WHEN_EMPTY = ("name", "description", "tags", "cache_key_fn", "cache_expiration", "retry_condition_fn",
                        "viz_return_value", "asset_deps", *TASK_HOOKS)
    _KEPT_WHEN_NONE = ("cache_result_in_memory", "timeout_seconds")

    def changed(self, given: dict[str, Any]) -> TaskOptions:
        """`with_options`: an option left out keeps its value; for those Prefect marks `NotSet`,
        None is a value (`result_storage=None` unsets it). Checked as at decoration."""
        changes = _changes(given, self._KEPT_WHEN_EMPTY, self._KEPT_WHEN_NONE)
        cached = {option: changes.pop(option) for option in caching.OPTIONS + ("cache_key_fn",) if option in changes}
        if cached or "result_serializer" in changes:
            merged = {**self.caching.given(), **cached}
            owner = f"task {changes.get('name', self.name)!r}"
            changes["caching"] = TaskCaching.of(owner, **merged, result_serializer=changes.get(
                "result_serializer", self.result_serializer))
        for hook in TASK_HOOKS:
            changes.setdefault(hook, list(getattr(self, hook)))  # the copy's own lists
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FlowOptions:
    """`@flow`'s options, resolved as Prefect resolves them."""

    name: str
    version: str | None = None
    description: str | None = None
    flow_run_name: Any = None
    retries: int = 0
    retry_delay_seconds: float = 0  # None given: the settings' default
    task_runner: Any = None  # a runner instance (a class given is instantiated)
    timeout_seconds: float | None = None
    validate_parameters: bool = True
    persist_result: bool | None = None  # a result_storage or result_serializer turns it on, as in Prefect
    result_storage: Any = None  # as given: a Path or a `LocalFileSystem`
    result_serializer: Any = None
    cache_result_in_memory: bool = True
    log_prints: bool | None = None
    on_completion: Any = None
    on_failure: Any = None
    on_cancellation: Any = None
    on_crashed: Any = None
    on_running: Any = None
    storage_path: Path | None = field(init=False, compare=False)  # the directory `result_storage` names
    state_hooks: dict[str, list[Hook]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = options.flow_name(options.name("flow", self.name))
        owner = f"flow {name!r}"
        retries = options.whole(owner, "retries", _or_setting(self.retries, settings.PREFECT_FLOW_DEFAULT_RETRIES))
        delay = _or_setting(self.retry_delay_seconds, settings.PREFECT_FLOW_DEFAULT_RETRY_DELAY_SECONDS)
        persist = options.flag(owner, "persist_result", self.persist_result)
        if persist is None and (self.result_storage is not None or self.result_serializer is not None):
            persist = True
        options.prefect_extras(owner, {"result_serializer": self.result_serializer,
                                       "cache_result_in_memory": None if self.cache_result_in_memory else False})
        state_hooks = hooks.hook_lists(owner, **{hook: getattr(self, hook) for hook in FLOW_HOOKS})
        _normalise(self, name=name, retries=retries, persist_result=persist,
                   retry_delay_seconds=options.seconds(owner, "retry_delay_seconds", delay) or 0,
                   task_runner=options.task_runner(owner, self.task_runner),
                   log_prints=options.flag(owner, "log_prints", self.log_prints),
                   flow_run_name=options.text_or_callable(owner, "flow_run_name", self.flow_run_name),
                   timeout_seconds=options.timeout(owner, "timeout_seconds", self.timeout_seconds),
                   validate_parameters=options.strict_flag(owner, "validate_parameters", self.validate_parameters),
                   storage_path=storage_path(owner, self.result_storage),
                   state_hooks=state_hooks, **state_hooks)

    _KEPT_WHEN_EMPTY = ("name", "version", "description", "flow_run_name", "task_runner", *FLOW_HOOKS)
    _KEPT_WHEN_NONE = ("retries", "retry_delay_seconds", "timeout_seconds", "validate_parameters",
                       "cache_result_in_memory")

    def changed(self, given: dict[str, Any]) -> FlowOptions:
        """`with_options`, with Prefect's rules (see `TaskOptions.changed`)."""
        changes = _changes(given, self._KEPT_WHEN_EMPTY, self._KEPT_WHEN_NONE)
        for hook in FLOW_HOOKS:
            changes.setdefault(hook, list(getattr(self, hook)))
        return dataclasses.replace(self, **changes)


def _changes(given: dict[str, Any], kept_when_empty: tuple[str, ...],
             kept_when_none: tuple[str, ...]) -> dict[str, Any]:
    """The options `with_options` changes: every other one is `NotSet`, None or empty (by its rule)."""
    changes = {}
    for option, value in given.items():
        if value is NotSet or (option in kept_when_none and value is None) or (option in kept_when_empty
                                                                               and not value):
            continue
        changes[option] = value
    return changes


def assigned(options_: T, name: str, value: Any) -> T:
    """`options_` with one field set, unchecked, as Prefect's attributes are assigned."""
    made = copy.copy(options_)
    object.__setattr__(made, name, value)
    return made


class Option(Generic[T]):
    """A task's or flow's attribute that is one field of its `options` (Prefect's attribute names)."""

    def __init__(self, field_name: str | None = None) -> None:
        self.field = field_name or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = self.field or name

    @overload
    def __get__(self, instance: None, owner: type) -> Option[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.options, self.field)

    def __set__(self, instance: Any, value: T) -> None:
        instance.options = assigned(instance.options, self.field, value)
