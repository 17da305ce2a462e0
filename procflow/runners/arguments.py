"""Pickling a run's arguments in the parent, for a worker process.

The arguments are a skeleton (`skeleton.py`): each upstream result is a `Slot`. A slot
is pickled as a *reference to the stored result* (a segment, a store entry, or the small
result's own bytes), which unpickles in the worker as the value itself: the parent never
loads a large result to pass it on, and the worker never walks the arguments. Slots given
directly as arguments (the common case) are swapped without a walk and pickled with C
pickle; deeper ones go through `SlotPickler`. A slot whose upstream rides ahead in the
same message (fusion) is handed over in the worker (`worker.batch_value`).
"""

from __future__ import annotations

import io
from typing import Any

import cloudpickle

from ..pickling import OutOfBand, dumps_plain, find_unpicklable, identity, wrap_large_arguments
from ..shapes import Args, Kwargs
from ..skeleton import LEAVES, Input, Slot
from ..states import LazyResult, is_terminal
from ..worker import batch_value
from .base import Call


def pickle_arguments(args: Args, kwargs: Kwargs, inputs: tuple[Input, ...], in_batch: frozenset[int] = frozenset(),
                     out_of_band: OutOfBand | None = None) -> bytes:
    """`(args, kwargs)` pickled for a worker, each slot as its input's reference.

    `in_batch`: runs fused ahead in the same message, not finished yet; the worker hands
    their stored results over itself (`worker.batch_value`). `out_of_band` takes large
    buffers (arrays the flow passes) out of the pickle.
    """
    if out_of_band is not None:
        args, kwargs = wrap_large_arguments(args, kwargs, out_of_band.threshold)
    if not inputs:
        return dumps_plain((args, kwargs), out_of_band)
    references = [reference(slot, in_batch) for slot in inputs]
    swapped = _swap_top_level(args, kwargs, references)
    if swapped is not None:
        return dumps_plain(swapped, out_of_band)
    out = io.BytesIO()
    SlotPickler(out, references, out_of_band).dump((args, kwargs))
    return out.getvalue()


def pickle_call(call: Call, in_batch: frozenset[int], out_of_band: OutOfBand | None) -> bytes:
    """A call's arguments for a worker; one that cannot be pickled is a `TypeError` naming the
    run, where in its arguments it sits, its type and pickle's reason."""
    try:
        return pickle_arguments(call.args, call.kwargs, call.inputs, in_batch, out_of_band)
    except Exception:
        # Look for the culprit the way the runner pickles, so upstream results are not blamed.
        def dumps(value: Any) -> bytes:
            return pickle_arguments((value,), {}, call.inputs, in_batch)

        where = find_unpicklable(call.args, "args", dumps)
        if where.endswith("pickles fine"):
            where = find_unpicklable(call.kwargs, "kwargs", dumps)
        message = (f"task run {call.who.run_name!r}: an argument cannot be pickled for a worker process: "
                   f"{where}. Use ThreadPoolTaskRunner for unpicklable arguments")
    # The path, the type and pickle's reason say it all: no traceback of procflow's own
    # pickling (40 lines in the log, issue 19).
    raise TypeError(message).with_traceback(None) from None


def reference(slot: Input, in_batch: frozenset[int]) -> tuple[Any, ...]:
    """How an upstream's result travels as an argument: a `__reduce__` pair that gives the value
    where it is unpickled. A result in a segment or the store is mapped there (`LazyResult.reference`)."""
    if slot.run_id in in_batch:
        return (batch_value, (slot.run_id,))
    state = slot.state
    if not is_terminal(state):
        raise RuntimeError(f"task run {slot.run_id} is not finished; it cannot be an argument yet")
    if state.is_completed() and isinstance(state.data, LazyResult):
        stored = state.data.reference()
        if stored is not None:
            return stored
    return (identity, (state._result(raise_on_failure=False),))  # an allow_failure upstream passes its exception


class SlotPickler(cloudpickle.Pickler):
    """cloudpickle, with each slot pickled as its input's reference."""

    def __init__(self, file: io.BytesIO, references: list[tuple[Any, ...]],
                 out_of_band: OutOfBand | None = None) -> None:
        super().__init__(file, protocol=5, buffer_callback=out_of_band)
        self.references = references

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Slot:
            return self.references[obj.position]
        return super().reducer_override(obj)


class _Reduced:
    """Pickles as the given reduction: an upstream's result reference."""

    __slots__ = ("reduction",)

    def __init__(self, reduction: tuple[Any, ...]) -> None:
        self.reduction = reduction

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduction


def _swap_top_level(args: Args, kwargs: Kwargs, references: list[tuple[Any, ...]]) -> tuple[Args, Kwargs] | None:
    """Slots given directly as arguments replaced by references; None when one may sit deeper."""

    def swap(value: Any) -> Any:
        kind = type(value)
        if kind in LEAVES:  # the same leaves as the walk that made the slots (issue 17)
            return value
        if kind is Slot:
            return _Reduced(references[value.position])
        raise LookupError  # a container or other object: slots may sit deeper

    try:
        return tuple(swap(value) for value in args), {key: swap(value) for key, value in kwargs.items()}
    except LookupError:
        return None
