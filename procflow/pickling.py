"""Pickling call arguments for a worker, and naming the part that cannot be pickled.

Futures inside arguments are pickled as a *reference to their result* (a
`ResultRef`), which unpickles in the worker as the value itself: the parent never
loads a large result to pass it on, and the worker never walks the arguments.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import fields, is_dataclass
from typing import Any, Callable

import cloudpickle

from .annotations import allow_failure, quote


def _identity(value: Any) -> Any:
    return value


class ArgumentPickler(cloudpickle.Pickler):
    """cloudpickle, with futures (bare or in `allow_failure`) replaced by their results."""

    def __init__(self, file: io.BytesIO, future_type: type, reduce_future: Callable[[Any], Any]) -> None:
        super().__init__(file, protocol=5)
        self._future_type = future_type
        self._reduce_future = reduce_future

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._future_type):
            return self._reduce_future(obj)
        kind = type(obj)
        if kind is allow_failure:
            return (_identity, (obj.value,))
        if kind is quote:
            return (_identity, (obj.value,))
        return super().reducer_override(obj)


def dumps_plain(value: Any) -> bytes:
    """Fast path for arguments without futures: C pickle, cloudpickle when needed."""
    try:
        return pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(value, protocol=5)


def dumps_with_futures(value: Any, future_type: type, reduce_future: Callable[[Any], Any]) -> bytes:
    out = io.BytesIO()
    ArgumentPickler(out, future_type, reduce_future).dump(value)
    return out.getvalue()


def find_unpicklable(value: Any, path: str, dumps: Callable[[Any], bytes] = cloudpickle.dumps) -> str:
    """The deepest path to a part of `value` that does not pickle, with the reason.

    `args[1]['conn']: cannot pickle '_thread.lock' object`
    """
    try:
        dumps(value)
    except Exception as error:  # noqa: BLE001 - any pickling error is the answer
        reason = str(error)
    else:
        return f"{path}: pickles fine"
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        children = [(f"{path}[{key!r}]", item) for key, item in value.items()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    elif is_dataclass(value) and not isinstance(value, type):
        children = [(f"{path}.{f.name}", getattr(value, f.name)) for f in fields(value)]
    elif hasattr(value, "__dict__"):
        children = [(f"{path}.{name}", item) for name, item in vars(value).items()]
    for child_path, child in children:
        try:
            dumps(child)
        except Exception:  # noqa: BLE001
            return find_unpicklable(child, child_path, dumps)
    return f"{path} ({type(value).__qualname__}): {reason}"
