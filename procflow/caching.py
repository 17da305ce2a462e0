"""Caching and persisted results, with Prefect 3.8's rules: a task's options, and each run's plan.

A task's options (`TaskCaching.of`), as Prefect resolves them when the task is made:
`cache_key_fn` becomes the policy (and wins over `cache_policy`, with a warning); a policy,
`cache_key_fn`, `result_storage` or `result_storage_key` turns `persist_result` on;
`persist_result=False` means `NO_CACHE`; the default policy is `DEFAULT`.

A run's plan (`plan`), made where the run is about to start: it persists when its task says
so, else when its flow run does, else by `PREFECT_RESULTS_PERSIST_BY_DEFAULT`. Only a run that
persists is cached; its key comes from the policy (or `result_storage_key`), and a completed
run with that key (in this flow run's memory, else in the store on disk, not expired) is served
as `Completed(name="Cached")` without running. Otherwise the run goes with a `Persist`, and
the place that holds its value (a worker, a runner thread, the flow's thread) writes it.
"""

from __future__ import annotations

import datetime
import logging
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import settings
from .cache_policies import DEFAULT, NO_CACHE, CachePolicy
from .records import FlowRun, TaskRun
from .run_ids import task_run_uuid
from .results import store
from .results.store import storage_path
from .messages import Persist
from .runlog import TASK_LOGGER
from .states import Completed, LazyResult, State
from .utilities.hashing import hash_objects, stable_hash


class NotSet:
    """An option not given (Prefect's `prefect.utilities.annotations.NotSet`)."""


_LOGGER = logging.getLogger("procflow.tasks")
OPTIONS = ("cache_policy", "persist_result", "result_storage", "result_storage_key", "cache_expiration",
           "refresh_cache")


@dataclass(frozen=True)
class TaskCaching:
    """A task's caching and persistence options, resolved as Prefect resolves them."""

    cache_policy: Any  # a CachePolicy, NO_CACHE, or None (a result_storage_key names the entry)
    cache_key_fn: Callable[..., str | None] | None
    persist_result: bool | None
    result_storage: Path | None
    result_storage_key: str | None
    cache_expiration: datetime.timedelta | None
    refresh_cache: bool | None
    given_policy: Any  # what the user passed, for `with_options`
    given_persist: bool | None
    given_storage: Any = None  # a Path or a `LocalFileSystem`, as passed (Prefect's `task.result_storage`)

    @classmethod
    def of(cls, owner: str, cache_policy: Any = NotSet, cache_key_fn: Callable[..., str | None] | None = None,
           persist_result: bool | None = None, result_storage: Any = None, result_storage_key: str | None = None,
           cache_expiration: datetime.timedelta | None = None, refresh_cache: bool | None = None,
           result_serializer: Any = None) -> TaskCaching:
        _check(owner, cache_policy, cache_key_fn, result_storage_key, cache_expiration)
        given_policy, given_persist = cache_policy, persist_result
        if cache_policy is NotSet and settings.PREFECT_TASKS_DEFAULT_NO_CACHE.value():
            cache_policy = NO_CACHE
        if cache_policy is not NotSet and cache_key_fn is not None:
            _LOGGER.warning(f"Both `cache_policy` and `cache_key_fn` are set on task {owner}. "
                            "`cache_key_fn` will be used.")
        if cache_key_fn is not None:
            cache_policy = CachePolicy.from_cache_key_fn(cache_key_fn)
        if persist_result is None and any((cache_policy not in (None, NO_CACHE, NotSet), cache_key_fn is not None,
                                           result_storage_key is not None, result_storage is not None,
                                           result_serializer is not None)):
            persist_result = True
        if settings.PREFECT_TASKS_DISABLE_CACHING.value():
            cache_policy = NO_CACHE
        if persist_result is False:
            if cache_policy not in (None, NO_CACHE, NotSet):
                _LOGGER.warning("Ignoring `cache_policy` because `persist_result` is False")
            policy: Any = None if cache_policy is None else NO_CACHE
        elif cache_policy is NotSet and result_storage_key is None:
            policy = DEFAULT
        elif cache_policy != NO_CACHE and result_storage_key:
            policy = None  # the entry is named by the key template alone
        else:
            policy = cache_policy
        return cls(policy, cache_key_fn, persist_result, storage_path(owner, result_storage), result_storage_key,
                   cache_expiration, refresh_cache, given_policy, given_persist, result_storage)

    def given(self) -> dict[str, Any]:
        """The options as the user gave them, for `with_options` (which resolves them again)."""
        return {"cache_policy": self.given_policy, "cache_key_fn": self.cache_key_fn,
                "persist_result": self.given_persist, "result_storage": self.given_storage,
                "result_storage_key": self.result_storage_key, "cache_expiration": self.cache_expiration,
                "refresh_cache": self.refresh_cache}


def _check(owner: str, cache_policy: Any, cache_key_fn: Any, result_storage_key: Any, cache_expiration: Any) -> None:
    if not (cache_policy is None or cache_policy is NotSet or isinstance(cache_policy, CachePolicy)
            or (isinstance(cache_policy, type) and issubclass(cache_policy, CachePolicy))):
        raise TypeError(f"{owner}: cache_policy must be a policy of procflow.cache_policies (INPUTS, TASK_SOURCE, "
                        f"FLOW_PARAMETERS, RUN_ID, NO_CACHE, DEFAULT, or a sum of them), got {cache_policy!r}")
    if cache_key_fn is not None and not callable(cache_key_fn):
        raise TypeError(f"{owner}: cache_key_fn must be a function, got {type(cache_key_fn).__name__} "
                        f"{cache_key_fn!r} (it is called with (context, parameters) and returns a str)")
    if result_storage_key is not None and not isinstance(result_storage_key, str):
        raise TypeError(f"{owner}: result_storage_key must be a string template, got {result_storage_key!r}")
    if cache_expiration is not None and not isinstance(cache_expiration, datetime.timedelta):
        raise TypeError(f"{owner}: cache_expiration must be a datetime.timedelta, got {cache_expiration!r}")


class Plan(NamedTuple):
    """What caching does with one run: the key it is looked up and stored under."""

    key: str
    persist: Persist
    refresh: bool


def plan(task: Any, run: TaskRun, flow_run: FlowRun, persist_default: bool | None, storage: Path | None,
         parameters: dict[str, Any]) -> Plan | None:
    """The run's plan, or None: it neither persists nor is cached."""
    caching: TaskCaching = task.caching
    if not persists(caching, persist_default):
        return None
    key = _key(task, caching, run, flow_run, parameters)
    if key is None:
        return None
    policy = caching.cache_policy
    directory = getattr(policy, "key_storage", None) or caching.result_storage or storage or store.storage_directory()
    if isinstance(policy, CachePolicy) and policy.keys_by_task:
        key = hash_objects(task.task_key, key)  # two tasks never share an entry by accident (module doc)
        assert key is not None
    expires = time.time() + caching.cache_expiration.total_seconds() if caching.cache_expiration else None
    refresh = caching.refresh_cache
    if refresh is None:
        refresh = settings.PREFECT_TASKS_REFRESH_CACHE.value()
    return Plan(key, Persist(str(Path(directory).expanduser()), key, task.name, expires), bool(refresh))


def persists(caching: TaskCaching, persist_default: bool | None) -> bool:
    """The task's persist_result, else its flow run's, else the setting (runs outside a flow)."""
    if caching.persist_result is not None:
        return caching.persist_result
    if persist_default is not None:
        return persist_default
    return bool(settings.PREFECT_RESULTS_PERSIST_BY_DEFAULT.value())


def task_key(fn: Callable[..., Any]) -> str:
    """Prefect's `task.task_key`: the function's name and a hash of its code, the same in every process."""
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its class's __call__
        code = getattr(vars(type(fn)).get("__call__"), "__code__", None)
    name = str(getattr(fn, "__qualname__", type(fn).__qualname__)).split(".")[-1]
    if code is None:
        return name
    digest = stable_hash(code.co_filename, str(code.co_firstlineno), code.co_code)
    return f"{name}-{digest[:8]}"


def _key(task: Any, caching: TaskCaching, run: TaskRun, flow_run: FlowRun, parameters: dict[str, Any]) -> str | None:
    """The policy's key, or the rendered `result_storage_key`; a policy that fails is logged, as
    Prefect does, and the run goes on without the cache."""
    context = types.SimpleNamespace(task=task, task_run=run, parameters=parameters, flow_run=flow_run)
    policy = caching.cache_policy
    try:
        if isinstance(policy, CachePolicy):
            key = policy.compute_key(task_ctx=context, inputs=parameters, flow_parameters=flow_run.parameters)
            return None if key is None else str(key)
        if caching.result_storage_key is not None:
            return render_storage_key(caching.result_storage_key, run, flow_run, parameters)
        return None
    except Exception as error:  # noqa: BLE001 - as Prefect: say so, and run without the cache
        by = getattr(caching.cache_key_fn, "__name__", None) or type(policy).__name__
        TASK_LOGGER.error(f"Task run '{run.name}' - Error encountered when computing cache key - result will "
                          f"not be persisted. {by}() raised {type(error).__name__}: {error}")
        return None


def render_storage_key(template: str, run: TaskRun, flow_run: FlowRun, parameters: dict[str, Any]) -> str:
    """`result_storage_key="{flow_run.name}/{task_run.task_name}-{parameters[x]}.pkl"`, as Prefect formats it."""
    task_run = types.SimpleNamespace(id=task_run_uuid(run.id), name=run.name, task_name=run.task_name,
                                     parameters=parameters, tags=sorted(run.tags), run_count=run.attempts)
    flow = types.SimpleNamespace(id=flow_run.id, name=flow_run.name, flow_name=flow_run.flow_name,
                                 parameters=flow_run.parameters, run_count=flow_run.run_count)
    return template.format(task_run=task_run, flow_run=flow, parameters=parameters)


Memory = dict[str, tuple[State, "float | None", float]]  # key: (state, expires, seconds its run took)


def lookup(found: Plan, memory: Memory, run: TaskRun) -> State | None:
    """A completed run with the plan's key, from this flow run's memory, else the store; the
    run record notes the run time it saves (`TaskRun.cached_seconds`)."""
    if found.refresh:
        return None
    remembered = memory.get(found.key)
    if remembered is not None and (remembered[1] is None or remembered[1] > time.time()):
        run.cached_seconds = remembered[2]
        return Completed(remembered[0].data, name="Cached")
    stored = store.lookup(found.persist.directory, found.key, run.name)
    if stored is None:
        return None
    run.cached_seconds = stored.header.duration
    return Completed(stored, name="Cached")


def remember(found: Plan | None, memory: Memory, state: State, run: TaskRun) -> None:
    """A completed run's state, for later runs of this flow run with the same key. Not one whose
    value a segment or a Dask worker holds only while its future lives: the store serves those."""
    if found is None or not state.is_completed():
        return
    if isinstance(state.data, LazyResult) and state.data.holds_storage:
        return
    memory[found.key] = (state, found.persist.expires, (run.end_time or 0.0) - (run.start_time or 0.0))


def stored_at_commit(found: Plan | None, memory: Memory, run: TaskRun, state: State,
                     value: Callable[[], Any]) -> Callable[[], None] | None:
    """What stores a completed run's result and remembers it for later runs of the flow run,
    called when the run's transaction commits (Prefect: at once with no transaction open
    above, else when the outermost one commits); None when there is nothing to store (no
    plan, not completed, or served from the cache). `value()` gives the result to write."""
    if found is None or not state.is_completed() or state.name == "Cached":
        return None

    def store_it() -> None:
        stored = store.write(found.persist, value(), (run.end_time or 0.0) - (run.start_time or 0.0), run.name)
        kept = Completed(stored) if stored is not None and isinstance(state.data, LazyResult) else state
        remember(found, memory, kept, run)

    return store_it


class TaskCachingAttributes:
    """Prefect's attributes of a task for its caching options (`task.cache_policy`, ...)."""

    caching: TaskCaching

    @property
    def cache_policy(self) -> Any:
        return self.caching.cache_policy

    @property
    def cache_key_fn(self) -> Callable[..., str | None] | None:
        return self.caching.cache_key_fn

    @property
    def persist_result(self) -> bool | None:
        return self.caching.persist_result

    @property
    def result_storage(self) -> Any:
        return self.caching.given_storage

    @property
    def result_storage_key(self) -> str | None:
        return self.caching.result_storage_key

    @property
    def cache_expiration(self) -> datetime.timedelta | None:
        return self.caching.cache_expiration

    @property
    def refresh_cache(self) -> bool | None:
        return self.caching.refresh_cache



def start_flow_run(tracker: Any, flow: Any, parent: Any | None) -> None:
    """A flow run begins: whether its tasks persist by default and where, from the flow, else its
    parent flow run, else the settings, read now (workers keep the environment they started with)."""
    tracker.persist_default = flow.persist_result if flow.persist_result is not None else (
        parent.persist_default if parent is not None else settings.PREFECT_RESULTS_PERSIST_BY_DEFAULT.value())
    tracker.storage = flow.storage_path or (parent.storage if parent is not None else None) or \
        store.storage_directory()


def subflow_call(flow: Any, blocked: State | None) -> tuple[Any, State | None]:
    """A subflow call: (its place among its parent's calls this attempt, the state it ends with
    now). A parent's retry does not run again a subflow that completed and persists, as Prefect
    finds the child's run of the earlier attempt: it gets that run's state."""
    from .current import current_flow

    parent = current_flow.get()
    if parent is None or blocked is not None:
        return None, blocked
    tracker = parent.tracker
    if tracker.subflow_attempt != parent.flow_run.run_count:
        tracker.subflow_attempt, tracker.subflow_counts = parent.flow_run.run_count, {}
    index = tracker.subflow_counts.get(flow.name, 0)
    tracker.subflow_counts[flow.name] = index + 1
    persists = flow.persist_result if flow.persist_result is not None else tracker.persist_default
    call = SubflowCall((flow.name, index), bool(persists), tracker)
    return call, tracker.subflows.get(call.key)


class SubflowCall(NamedTuple):
    key: tuple[str, int]  # the subflow's name, and how many calls of it came before in this attempt
    persists: bool
    parent: Any  # the parent flow run's Tracker


def remember_subflow(call: SubflowCall | None, state: State) -> None:
    """A completed subflow run that persists, for its parent's retries."""
    if call is not None and call.persists and state.is_completed():
        call.parent.subflows[call.key] = state
