"""Prefect 3's cache policies (`prefect.cache_policies`): what a task run's cache key is made of.

`INPUTS` (the run's parameters), `TASK_SOURCE` (the task's code), `FLOW_PARAMETERS`,
`RUN_ID` (the flow run), `NO_CACHE`; `DEFAULT` is `INPUTS + TASK_SOURCE + RUN_ID`. Policies add
up with `+` (the key hashes each part's key), `INPUTS - "name"` leaves a parameter out, and
`CachePolicy.from_cache_key_fn(fn)` makes a policy of a `cache_key_fn`.

One difference from Prefect, on purpose: a key made by the built-in policies is stored with
the task's identity mixed in (`caching.storage_key`), so two different tasks called with the
same inputs never return each other's results. A key your own `cache_key_fn` computes is used
as it is: tasks that return the same key share the entry, as you asked.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .utilities.hashing import HashError, hash_objects

_sha1 = functools.partial(hashlib.sha1, usedforsecurity=False)


@dataclass
class CachePolicy:
    """A rule for a run's cache key. `key_storage`: a directory where its entries go instead of
    the result storage (`configure(key_storage=...)`, as Prefect's)."""

    key_storage: str | Path | None = None
    isolation_level: Any = None
    lock_manager: Any = None

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]) -> CacheKeyFnPolicy:
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def configure(self, key_storage: str | Path | None = None, lock_manager: Any = None,
                  isolation_level: Any = None) -> CachePolicy:
        made = copy.deepcopy(self)
        if key_storage is not None:
            made.key_storage = key_storage
        if lock_manager is not None:
            made.lock_manager = lock_manager
        if isolation_level is not None:
            made.isolation_level = isolation_level
        return made

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        raise NotImplementedError

    @property
    def keys_by_task(self) -> bool:
        """Its keys are stored per task (the built-in policies), not shared by whoever computes them."""
        return True

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        return self

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, _None):
            return self
        for option in ("key_storage", "isolation_level", "lock_manager"):
            mine, theirs = getattr(self, option), getattr(other, option)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"Cannot add CachePolicies with different {_WHAT[option]}.")
        return CompoundCachePolicy(policies=[self, other], key_storage=self.key_storage or other.key_storage,
                                   isolation_level=self.isolation_level or other.isolation_level,
                                   lock_manager=self.lock_manager or other.lock_manager)


_WHAT = {"key_storage": "storage locations", "isolation_level": "isolation levels",
         "lock_manager": "lock implementations"}


@dataclass
class CacheKeyFnPolicy(CachePolicy):
    """The key is what `cache_key_fn(context, parameters)` returns."""

    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return self.cache_key_fn(task_ctx, inputs) if self.cache_key_fn else None

    @property
    def keys_by_task(self) -> bool:
        return False


@dataclass
class CompoundCachePolicy(CachePolicy):
    """Several policies: the key hashes their keys (those that are not None), in order."""

    policies: list[CachePolicy] = field(default_factory=list)

    def __post_init__(self) -> None:
        flat = [inner for policy in self.policies
                for inner in (policy.policies if isinstance(policy, CompoundCachePolicy) else [policy])]
        inputs = [policy for policy in flat if isinstance(policy, Inputs)]
        self.policies = [policy for policy in flat if not isinstance(policy, Inputs)]
        if inputs:  # one Inputs, leaving out what any of them left out
            self.policies.append(Inputs(exclude=sorted({name for policy in inputs for name in policy.exclude})))

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        keys = [key for policy in self.policies
                if (key := policy.compute_key(task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters,
                                              **kwargs)) is not None]
        return hash_objects(*keys, raise_on_failure=True) if keys else None

    @property
    def keys_by_task(self) -> bool:
        return any(policy.keys_by_task for policy in self.policies)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        super().__add__(other)  # the same checks
        more = other.policies if isinstance(other, CompoundCachePolicy) else [other]
        return CompoundCachePolicy(policies=[*self.policies, *more], key_storage=self.key_storage or other.key_storage,
                                   isolation_level=self.isolation_level or other.isolation_level,
                                   lock_manager=self.lock_manager or other.lock_manager)

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        if not any(isinstance(policy, Inputs) for policy in self.policies):
            return self
        return CompoundCachePolicy(policies=[*self.policies, Inputs(exclude=[other])])


@dataclass
class _None(CachePolicy):
    """No key: the run is never cached, and with persistence its result is not written."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other


@dataclass
class TaskSource(CachePolicy):
    """The task's source code: editing the task makes new keys."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        return hash_objects(task_source(task_ctx.task), hash_algo=_sha1, raise_on_failure=True)


def task_source(task: Any) -> str | bytes:
    """The task function's source, or its byte code when the source cannot be read."""
    fn = getattr(task, "fn", task)
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return code.co_code if code is not None else repr(fn)


@dataclass
class FlowParameters(CachePolicy):
    """The flow run's parameters."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if not flow_parameters:
            return None
        return hash_objects(flow_parameters, hash_algo=_sha1, raise_on_failure=True)


@dataclass
class RunId(CachePolicy):
    """The flow run (its retries included); a run outside any flow keys by its own run."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        run_id = task_ctx.task_run.flow_run_id
        return str(run_id if run_id is not None else task_ctx.task_run.id)


@dataclass
class Inputs(CachePolicy):
    """The run's parameters, but those in `exclude`. A run without parameters has no key."""

    exclude: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if not inputs:
            return None
        kept = {name: value for name, value in inputs.items() if name not in self.exclude}
        try:
            return hash_objects(kept, hash_algo=_sha1, raise_on_failure=True)
        except HashError as error:
            raise ValueError(
                f"{error}\n\nThis often occurs when task inputs contain objects that cannot be cached like locks, "
                "file handles, or other system resources.\n\nTo resolve this, you can:\n"
                "  1. Exclude these arguments by defining a custom `cache_key_fn`\n"
                "  2. Disable caching by passing `cache_policy=NO_CACHE`\n") from error

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        return Inputs(exclude=[*self.exclude, other])


INPUTS = Inputs()
NONE = _None()
NO_CACHE = _None()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID
