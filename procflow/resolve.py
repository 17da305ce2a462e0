"""One walk over call arguments: the futures in them, at any depth, and `substitute()`.

Futures may sit in lists, tuples, sets, dict keys and values, and dataclass fields;
each one found is a "data" dependency, and so is a state read from a future
(`future.state`, `.submit(return_state=True)`), which Prefect resolves to its result
too. `quote(x)` is not looked into, nor is `opaque(x)` past a future it holds. Arrays,
bytes and other leaves are never walked, so a large argument costs nothing here.

`skeleton()` makes a run's arguments into the skeleton the runners fill (`skeleton.py`):
runners never see a future. `substitute()` replaces futures by their results where the
parent needs the values (a direct call, a run name, a cache key).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, Callable, Sequence

from .annotations import allow_failure, opaque, quote, unmapped
from .task_future import TaskFuture
from .records import EdgeKind
from .shapes import Args, Kwargs
from .skeleton import LEAVES, Slot, rebuild
from .states import NotReady, State

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
        if kind in LEAVES:
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
        elif kind is opaque:  # the future itself, not what is inside anything else
            inner = value.value
            if type(inner) is TaskFuture:
                found.append((inner, allowed))
            elif type(inner) is State and inner.holder is not None:
                found.append((inner.holder, allowed))
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


def substitute(value: Any, replace: Callable[[Any, bool], Any] = result_of, allowed: bool = False) -> Any:
    """`value` with every future replaced by `replace(it, allowed)`, annotations unwrapped;
    `allowed` holds for everything inside an `allow_failure`, as in Prefect. A state read
    from a future stands for it. A container met again (a self-referencing argument) is its
    one rebuilt copy (a memo)."""
    return rebuild(value, replace, TaskFuture, allowed, unwrap=True, holders=True)


def skeleton(args: Args, kwargs: Kwargs) -> tuple[Args, Kwargs, Found]:
    """A run's arguments with each upstream result as `Slot(i)` (`skeleton.py`), and the
    futures of the slots, in order. Arguments with no future or annotation are returned
    as they are: the walk that finds none copies nothing."""
    found: Found = []
    if not (collect(args, found) | collect(kwargs, found)):
        return args, kwargs, found
    slots: Found = []

    def slot(future: TaskFuture[Any], allowed: bool) -> Slot:
        slots.append((future, allowed))
        return Slot(len(slots) - 1)

    return rebuild(args, slot, TaskFuture, unwrap=True, holders=True), \
        rebuild(kwargs, slot, TaskFuture, unwrap=True, holders=True), slots


def wait_futures(wait_for: Any) -> Found:
    """Futures in `wait_for` (any nesting); other objects are ignored, like Prefect."""
    if wait_for is None:
        return []
    found: Found = []
    collect(wait_for if isinstance(wait_for, (list, tuple, set)) else [wait_for], found)
    return found


def edges(found: Found, waits: Found) -> Sequence[tuple[int, EdgeKind]]:
    """A run's upstream edges for its record and the graph: its arguments' futures, then wait_for's
    (once each). No edges: one shared empty tuple (a 100 000-run map keeps no empty list per run
    for the collector to scan)."""
    if not found and not waits:
        return ()
    seen: dict[tuple[int, EdgeKind], None] = {}
    for future, _ in found:
        seen[(future.task_run.id, "data")] = None
    for future, _ in waits:
        seen[(future.task_run.id, "wait_for")] = None
    return list(seen)
