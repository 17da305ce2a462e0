"""A call's arguments as a skeleton: each upstream result a `Slot`, filled where the call runs.

When a run is made, its arguments are walked once (`resolve.skeleton`): every future,
every state read from a future and every `allow_failure(future)` becomes `Slot(i)`, the
i-th of the run's data upstreams; `quote`, `unmapped` and `allow_failure` are unwrapped.
When the run is dispatched, the engine gives the call one `Input` per slot (the upstream's
run id, its final state, whether its failure is allowed) and each runner fills the slots
its own way: threads with the values (`fill`), the process pool with references to the
stored results that unpickle as the values in the worker (`runners/arguments.py`), Dask
with the upstreams' Dask futures. Runners never see a future (issue 17).

A leaf: it knows states and the annotation wrappers, not futures, runners or the engine.
The walk that rebuilds containers (`rebuild`) keeps a memo, so a self-referencing argument
is rebuilt once and stays self-referencing.
"""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass
from typing import Any, Callable, NamedTuple

from .annotations import allow_failure, opaque, quote, unmapped
from .states import State

LEAVES = frozenset({int, float, str, bytes, bool, type(None), complex, bytearray, range})


class Slot(NamedTuple):
    """Where input number `position` of the call goes."""

    position: int


class Input(NamedTuple):
    """What fills one slot: an upstream run's final state (`allowed`: its failure is passed on)."""

    run_id: int
    state: State
    allowed: bool

    def value(self) -> Any:
        """The upstream's result, in this process (its exception when its failure is allowed)."""
        return self.state._result(raise_on_failure=not self.allowed)


def fill(value: Any, inputs: list[Any] | tuple[Any, ...]) -> Any:
    """`value` with each `Slot(i)` replaced by `inputs[i]`; containers holding none kept as they are."""
    return rebuild(value, lambda slot, allowed: inputs[slot.position], Slot, unwrap=False)


_Memo = dict[tuple[int, bool], Any]


def rebuild(value: Any, replace: Callable[[Any, bool], Any], target: type, allowed: bool = False,
            unwrap: bool = True, holders: bool = False) -> Any:
    """`value` with every object of type `target` replaced by `replace(it, allowed)`.

    `unwrap`: annotations are taken off (`allowed` holds for everything inside an
    `allow_failure`, as in Prefect; a `quote` is not looked into). `holders`: a state read
    from a future stands for that future (`State.holder`). Lists, tuples, sets, dicts and
    dataclasses are rebuilt; other objects are left as they are.
    """
    return _rebuild(value, replace, target, allowed, unwrap, holders, {})


def _rebuild(value: Any, replace: Callable[[Any, bool], Any], target: type, allowed: bool, unwrap: bool,
             holders: bool, memo: _Memo) -> Any:
    kind = type(value)
    if kind in LEAVES:
        return value
    if kind is target:
        return replace(value, allowed)
    if kind is State:  # a state is a value, never walked into: a future's stands for that future
        return replace(value.holder, allowed) if holders and value.holder is not None else value
    if unwrap:
        if kind is allow_failure:
            return _rebuild(value.value, replace, target, True, unwrap, holders, memo)
        if kind is quote:
            return value.value
        if kind is opaque:
            inner = value.value
            if type(inner) is target:
                return replace(inner, allowed)
            if holders and type(inner) is State and inner.holder is not None:
                return replace(inner.holder, allowed)
            return inner
        if kind is unmapped:
            return _rebuild(value.value, replace, target, allowed, unwrap, holders, memo)
    key = (id(value), allowed)
    if key in memo:
        return memo[key]

    def again(item: Any) -> Any:
        return _rebuild(item, replace, target, allowed, unwrap, holders, memo)

    if isinstance(value, list):
        rebuilt: list[Any] = []
        memo[key] = rebuilt  # before the items: one of them may be this list
        rebuilt.extend(again(item) for item in value)
        return rebuilt
    if isinstance(value, dict):
        clone = {} if type(value) is dict else copy.copy(value)
        clone.clear()
        memo[key] = clone
        for item_key, item in list(value.items()):
            clone[again(item_key)] = again(item)
        return clone
    if isinstance(value, tuple):
        items = [again(item) for item in value]
        memo[key] = type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        return memo[key]
    if isinstance(value, (set, frozenset)):
        memo[key] = type(value)(again(item) for item in value)
        return memo[key]
    if is_dataclass(value) and not isinstance(value, type):
        instance = copy.copy(value)
        memo[key] = instance
        for field in fields(value):
            object.__setattr__(instance, field.name, again(getattr(value, field.name)))
        return instance
    return value
