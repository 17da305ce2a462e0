"""Pickling a run's arguments in the parent, for a worker process.

Futures inside arguments are pickled as a *reference to their result* (a `ResultRef`),
which unpickles in the worker as the value itself: the parent never loads a large
result to pass it on, and the worker never walks the arguments. Futures given directly
as arguments (the common case) are swapped without a walk and pickled with C pickle;
deeper ones go through `ArgumentPickler`.
"""

from __future__ import annotations

import io
from typing import Any

import cloudpickle

from ..annotations import allow_failure, quote
from ..futures import TaskFuture
from ..pickling import OutOfBand, dumps_plain, identity, wrap_large_arguments
from ..states import State
from ..worker import batch_value
from ..shapes import Args, Kwargs

_LEAVES = frozenset({int, float, str, bytes, bool, type(None), complex})


def pickle_arguments(args: Args, kwargs: Kwargs, has_futures: bool, in_batch: frozenset[int] = frozenset(),
                     out_of_band: OutOfBand | None = None) -> bytes:
    """`(args, kwargs)` pickled for a worker; futures become result references.

    `in_batch`: runs fused ahead in the same message, not finished yet; the worker hands
    their stored results over itself (`worker.batch_value`). `out_of_band` takes large
    buffers (arrays the flow passes) out of the pickle.
    """
    if out_of_band is not None:
        args, kwargs = wrap_large_arguments(args, kwargs, out_of_band.threshold)
    if not has_futures:
        return dumps_plain((args, kwargs), out_of_band)
    swapped = _swap_top_level(args, kwargs, in_batch)
    if swapped is not None:
        return dumps_plain(swapped, out_of_band)
    out = io.BytesIO()
    ArgumentPickler(out, in_batch, out_of_band).dump((args, kwargs))
    return out.getvalue()


def _reference(future: TaskFuture[Any], in_batch: frozenset[int]) -> tuple[Any, ...]:
    run_id = future.task_run.id
    return (batch_value, (run_id,)) if run_id in in_batch else future.reduce_for_worker()


class ArgumentPickler(cloudpickle.Pickler):
    """cloudpickle, with futures (bare or in `allow_failure`) pickled as their results."""

    def __init__(self, file: io.BytesIO, in_batch: frozenset[int], out_of_band: OutOfBand | None = None) -> None:
        super().__init__(file, protocol=5, buffer_callback=out_of_band)
        self.in_batch = in_batch

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is TaskFuture:
            return _reference(obj, self.in_batch)
        if kind is State and obj.holder is not None:
            return _reference(obj.holder, self.in_batch)
        if kind is allow_failure or kind is quote:
            return (identity, (obj.value,))
        return super().reducer_override(obj)


class _Reduced:
    """Pickles as the given reduction: a future's result reference."""

    __slots__ = ("reduction",)

    def __init__(self, reduction: tuple[Any, ...]) -> None:
        self.reduction = reduction

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduction


def _swap_top_level(args: Args, kwargs: Kwargs, in_batch: frozenset[int]) -> tuple[Args, Kwargs] | None:
    """Futures given directly as arguments replaced by references; None when one sits deeper."""

    def swap(value: Any) -> Any:
        kind = type(value)
        if kind in _LEAVES:
            return value
        if kind is State and value.holder is not None:
            value, kind = value.holder, TaskFuture
        if kind is TaskFuture:
            return _Reduced(_reference(value, in_batch))
        if kind is allow_failure or kind is quote:
            inner = value.value
            if type(inner) is State and inner.holder is not None:
                inner = inner.holder
            if type(inner) is TaskFuture and kind is allow_failure:
                return _Reduced(_reference(inner, in_batch))
            if type(inner) in _LEAVES:
                return inner
        raise LookupError  # a container or other object: futures may sit deeper

    try:
        return tuple(swap(value) for value in args), {key: swap(value) for key, value in kwargs.items()}
    except LookupError:
        return None
