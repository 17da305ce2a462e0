""".map()'s arguments: which are zipped iterables and which pass whole, per parameter.

Iterable arguments (lists, tuples, ranges, a future whose result is iterable) are zipped;
`unmapped(...)`, strings, bytes and other scalars go whole to every child; an `allow_failure`
or `quote` around an iterable maps over its items, each wrapped again (as Prefect). Each item
of `*args` and each value of `**kwargs` counts as a parameter of its own (a `Parameter` key).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import io
from typing import Any, Iterator

from .annotations import allow_failure, quote, unmapped
from .future_kinds import PrefectFuture
from .task_future import TaskFuture
from .states import State
from .exceptions import MappingLengthMismatch, MappingMissingIterable


def split_mapped(task_name: str, signature: inspect.Signature,
                 arguments: dict[str, Any]) -> tuple[dict[Parameter, list[Any]], dict[Parameter, Any]]:
    """The zipped iterables and the values passed whole, per parameter; each item of
    `*args` and each value of `**kwargs` counts as a parameter of its own."""
    iterables: dict[Parameter, list[Any]] = {}
    statics: dict[Parameter, Any] = {}
    for name, value in _spread_variadic(signature, arguments):
        annotation = type(value) if isinstance(value, (allow_failure, quote)) else None
        if annotation is not None:  # as Prefect: map over what it wraps, each item wrapped again
            inner = value.value
            if isinstance(inner, (unmapped, TaskFuture)) or not is_iterable(inner):  # passed whole
                statics[name] = annotation(inner.value if isinstance(inner, unmapped) else inner)
            else:
                iterables[name] = [annotation(item) for item in inner]
        elif isinstance(value, unmapped):
            statics[name] = value.value
        elif isinstance(value, (PrefectFuture, State)):  # a state maps over its result, as in Prefect
            # its items are the children's: wait for it now (any Prefect future: procflow's, or one of its own kind)
            result = value.result() if isinstance(value, PrefectFuture) else value._result()
            if is_iterable(result):
                iterables[name] = list(result)
            else:
                statics[name] = value
        elif is_iterable(value):
            iterables[name] = list(value)
        else:
            statics[name] = value
    if not iterables:
        raise MappingMissingIterable(
            f"task {task_name!r}: .map() received no iterable parameters. Parameters for map must "
            f"include at least one iterable; wrap values to pass whole in unmapped(). "
            f"Parameters: {sorted(arguments)}")
    lengths = {_label(name): len(items) for name, items in iterables.items()}
    if len(set(lengths.values())) > 1:
        raise MappingLengthMismatch(
            f"task {task_name!r}: received iterable parameters with different lengths. Parameters for "
            f"map must all be the same length. Got lengths: {lengths}")
    return iterables, statics



def children(signature: inspect.Signature, iterables: dict[Parameter, list[Any]],
             statics: dict[Parameter, Any]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Each child's `(args, kwargs)`: its items of the iterables, and the statics, in order.
    A function whose parameters all take keywords gets keywords only (no binding per child)."""
    parameters = signature.parameters.values()
    keyword_only = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters)
    count = len(next(iter(iterables.values())))
    for index in range(count):
        child = dict(statics)
        for name, items in iterables.items():
            child[name] = items[index]
        if keyword_only:
            yield (), child  # type: ignore[misc]  # plain parameters: Parameter keys are names
        else:
            bound = inspect.BoundArguments(signature, gather_variadic(signature, child))
            yield bound.args, bound.kwargs


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


Parameter = str | tuple[str, Any]  # a parameter's name; (name, index or key) inside *args / **kwargs


def _spread_variadic(signature: inspect.Signature, arguments: dict[str, Any]) -> Iterator[tuple[Parameter, Any]]:
    for name, value in arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            yield from (((name, index), item) for index, item in enumerate(value))
        elif kind is inspect.Parameter.VAR_KEYWORD:
            yield from (((name, key), item) for key, item in value.items())
        else:
            yield name, value


def gather_variadic(signature: inspect.Signature, child: dict[Parameter, Any]) -> dict[str, Any]:
    """A child's arguments by parameter name again: its `*args` a tuple, its `**kwargs` a dict."""
    gathered: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        spread = [(key[1], value) for key, value in child.items() if isinstance(key, tuple) and key[0] == name]
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            gathered[name] = tuple(value for _, value in sorted(spread, key=lambda pair: pair[0]))
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            gathered[name] = dict(spread)
        elif name in child:
            gathered[name] = child[name]
    return gathered


def _label(parameter: Parameter) -> str:
    if isinstance(parameter, str):
        return parameter
    name, key = parameter
    return f"{name}[{key}]" if isinstance(key, int) else key


def is_iterable(value: Any) -> bool:
    """Prefect's rule: anything iterable but strings, bytes and files."""
    if isinstance(value, (str, bytes, bytearray, io.IOBase)):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True
