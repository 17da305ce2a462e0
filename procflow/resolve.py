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
from .states import NotReady, State

_LEAVES = frozenset({int, float, str, bytes, bool, type(None), complex, bytearray, range})
_SEQUENCES = (list, tuple, set, frozenset)

# (future, its failure is allowed)
Found = list[tuple[TaskFuture[Any], bool]]


def wait_all(found: Found) -> None:
    for future, _ in found:
        future.wait()


def not_ready(upstream: Found) -> State | None:
    """The `NotReady` state of a run whose upstreams are done and one of them did not complete
    (and is not `allow_failure`): the first in order, as Prefect resolves inputs one by one."""
    for future, allowed in upstream:
        if not allowed and not future.state.is_completed():
            error = future.state.data if isinstance(future.state.data, BaseException) else None
            return NotReady(future.task_run.name, error)
    return None


def collect(value: Any, found: Found, allowed: bool = False) -> bool:
    """Append the futures inside `value` to `found`, in argument order; True when
    substitution is needed.

    Issue 19: a self-referencing argument (a tree with parent pointers, a list holding
    itself) or one nested 10 000 deep raised RecursionError in the flow body. The walk keeps
    its own stack, not the C stack, and a memo of the containers it has entered (per
    `allowed`, so a list seen inside `allow_failure` and outside it counts both ways)."""
    marked = False
    stack: list[tuple[Any, bool]] = [(value, allowed)]
    entered: set[tuple[int, bool]] = set()
    while stack:
        value, allowed = stack.pop()
        kind = type(value)
        if kind in _LEAVES:
            continue
        if kind is TaskFuture:
            found.append((value, allowed))
            marked = True
        elif kind is State:  # a state read from a future stands for that upstream, as in Prefect
            if value.holder is not None:
                found.append((value.holder, allowed))
                marked = True
        elif kind is allow_failure:
            stack.append((value.value, True))
            marked = True
        elif kind is quote:
            marked = True
        elif kind is unmapped:
            stack.append((value.value, allowed))
        elif (id(value), allowed) not in entered:
            children = _children(value)
            if children is not None:
                entered.add((id(value), allowed))
                stack.extend((child, allowed) for child in reversed(children))  # popped in order
    return marked


def _children(value: Any) -> list[Any] | None:
    """What a container holds, in order (a dict: each key, then its value); None for others."""
    if isinstance(value, dict):
        return [part for pair in value.items() for part in pair]
    if isinstance(value, _SEQUENCES):
        return list(value)
    if is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, field.name) for field in fields(value)]
    return None


def result_of(future: TaskFuture[Any], allowed: bool) -> Any:
    """In-process runners: the upstream's value (its exception when its failure is allowed)."""
    return future.task_run.state._result(raise_on_failure=not allowed)


def substitute(value: Any, replace: Callable[[Any, bool], Any] = result_of, target: type = TaskFuture,
               allowed: bool = False) -> Any:
    """`value` with every `target` (a future) replaced by `replace(it, allowed)`, annotations
    unwrapped; `allowed` holds for everything inside an `allow_failure`, as in Prefect.
    A container met again (a self-referencing argument) is its one rebuilt copy (a memo)."""
    return _substitute(value, replace, target, allowed, {})


_Memo = dict[tuple[int, bool], Any]


def _substitute(value: Any, replace: Callable[[Any, bool], Any], target: type, allowed: bool, memo: _Memo) -> Any:
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is target:
        return replace(value, allowed)
    if kind is State:  # a state is a value, never walked into: a future's stands for that future
        return replace(value.holder, allowed) if target is TaskFuture and value.holder is not None else value
    if kind is allow_failure:
        return _substitute(value.value, replace, target, True, memo)
    if kind is quote:
        return value.value
    if kind is unmapped:
        return _substitute(value.value, replace, target, allowed, memo)
    key = (id(value), allowed)
    if key in memo:
        return memo[key]
    if isinstance(value, list):
        rebuilt: list[Any] = []
        memo[key] = rebuilt  # before the items: one of them may be this list
        rebuilt.extend(_substitute(item, replace, target, allowed, memo) for item in value)
        return rebuilt
    if isinstance(value, dict):
        clone = {} if type(value) is dict else copy.copy(value)
        clone.clear()
        memo[key] = clone
        for item_key, item in list(value.items()):
            clone[_substitute(item_key, replace, target, allowed, memo)] = _substitute(item, replace, target,
                                                                                      allowed, memo)
        return clone
    if isinstance(value, tuple):
        items = [_substitute(item, replace, target, allowed, memo) for item in value]
        memo[key] = type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        return memo[key]
    if isinstance(value, (set, frozenset)):
        memo[key] = type(value)(_substitute(item, replace, target, allowed, memo) for item in value)
        return memo[key]
    if is_dataclass(value) and not isinstance(value, type):
        instance = copy.copy(value)
        memo[key] = instance
        for field in fields(value):
            object.__setattr__(instance, field.name, _substitute(getattr(value, field.name), replace, target,
                                                                 allowed, memo))
        return instance
    return value
