"""One walk over call arguments: the futures in them, at any depth, and `substitute()`.

Futures may sit in lists, tuples, sets, dict keys and values, and dataclass fields;
each one found is a "data" dependency, and so is a state read from a future
(`future.state`, `.submit(return_state=True)`), which Prefect resolves to its result
too. `quote(x)` is not looked into. Arrays, bytes and other leaves are never walked,
so a large argument costs nothing here.

In-process runners call `substitute()` to replace futures by their results just before
the call; the process runner never walks again: it pickles futures as result
references (`pickling.ArgumentPickler`).
"""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass
from typing import Any, Callable

from .annotations import allow_failure, quote, unmapped
from .futures import TaskFuture
from .states import State

_LEAVES = frozenset({int, float, str, bytes, bool, type(None), complex, bytearray, range})
_SEQUENCES = (list, tuple, set, frozenset)

# (future, its failure is allowed)
Found = list[tuple[TaskFuture, bool]]


def collect(value: Any, found: Found, allowed: bool = False) -> bool:
    """Append the futures inside `value` to `found`; True when substitution is needed."""
    kind = type(value)
    if kind in _LEAVES:
        return False
    if kind is TaskFuture:
        found.append((value, allowed))
        return True
    if kind is State:  # a state read from a future stands for that upstream, as in Prefect
        if value.holder is not None:
            found.append((value.holder, allowed))
        return value.holder is not None
    if kind is allow_failure:
        collect(value.value, found, True)
        return True
    if kind is quote:
        return True
    if kind is unmapped:
        return collect(value.value, found, allowed)
    if isinstance(value, dict):
        marked = False
        for key, item in value.items():
            marked = collect(key, found, allowed) | collect(item, found, allowed) | marked
        return marked
    if isinstance(value, _SEQUENCES):
        marked = False
        for item in value:
            marked = collect(item, found, allowed) | marked
        return marked
    if is_dataclass(value) and not isinstance(value, type):
        marked = False
        for field in fields(value):
            marked = collect(getattr(value, field.name), found, allowed) | marked
        return marked
    return False


def result_of(future: TaskFuture, allowed: bool) -> Any:
    """In-process runners: the upstream's value (its exception when its failure is allowed)."""
    return future.task_run.state.result(raise_on_failure=not allowed)


def substitute(value: Any, replace: Callable[[Any, bool], Any] = result_of, target: type = TaskFuture,
               allowed: bool = False) -> Any:
    """`value` with every `target` (a future) replaced by `replace(it, allowed)`, annotations
    unwrapped; `allowed` holds for everything inside an `allow_failure`, as in Prefect."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is target:
        return replace(value, allowed)
    if kind is State and target is TaskFuture and value.holder is not None:
        return replace(value.holder, allowed)
    if kind is allow_failure:
        return substitute(value.value, replace, target, True)
    if kind is quote:
        return value.value
    if kind is unmapped:
        return substitute(value.value, replace, target, allowed)
    if isinstance(value, dict):
        if type(value) is dict:
            return {substitute(key, replace, target, allowed): substitute(item, replace, target, allowed)
                    for key, item in value.items()}
        return _rebuild_mapping(value, replace, target, allowed)
    if isinstance(value, list):
        return [substitute(item, replace, target, allowed) for item in value]
    if isinstance(value, tuple):
        items = [substitute(item, replace, target, allowed) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, (set, frozenset)):
        return type(value)(substitute(item, replace, target, allowed) for item in value)
    if is_dataclass(value) and not isinstance(value, type):
        clone = copy.copy(value)
        for field in fields(value):
            object.__setattr__(clone, field.name, substitute(getattr(value, field.name), replace, target, allowed))
        return clone
    return value


def _rebuild_mapping(value: dict, replace: Callable[[Any, bool], Any], target: type, allowed: bool) -> dict:
    clone = copy.copy(value)
    clone.clear()
    for key, item in value.items():
        clone[substitute(key, replace, target, allowed)] = substitute(item, replace, target, allowed)
    return clone
