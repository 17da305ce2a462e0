"""Pickling for both sides: C pickle first, and naming the part that does not pickle."""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import sys
import types
from dataclasses import fields, is_dataclass
from typing import Any, Callable

import cloudpickle
from .shapes import Args, Kwargs


def identity(value: Any) -> Any:
    """Unpickles as `value`: how a stored result or an unwrapped argument is sent."""
    return value


def dumps_plain(value: Any, out_of_band: OutOfBand | None = None) -> bytes:
    """C pickle, or cloudpickle when the value needs it.

    C pickle refers to classes and functions by module name; a worker cannot import
    `__main__` of the parent nor a script run by path, so a pickle naming one of those
    is redone with cloudpickle, which sends them by value.
    """
    try:
        data = dumps_fast(value, out_of_band) if out_of_band is not None else pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        return _cloudpickled(value, out_of_band)
    if b"__main__" in data or any(name.encode() in data for name in cloudpickle.list_registry_pickle_by_value()):
        return _cloudpickled(value, out_of_band)
    return data


def _cloudpickled(value: Any, out_of_band: OutOfBand | None) -> bytes:
    if out_of_band is not None:
        out_of_band.buffers.clear()  # what the first try took out is in this pickle again
    data: bytes = cloudpickle.dumps(value, protocol=5, buffer_callback=out_of_band)
    return data


class _BufferPicklerMixin:
    """Sends a memoryview at or above the threshold out of band, like arrays (pickle alone
    refuses one). CPython never asks `reducer_override` about exact bytes or bytearray:
    those are wrapped before pickling instead (`wrap_large_buffers`)."""

    threshold: int

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is memoryview and obj.nbytes >= self.threshold and obj.c_contiguous:
            return _LargeBuffer(obj).__reduce__()
        parent = super()
        return parent.reducer_override(obj) if hasattr(parent, "reducer_override") else NotImplemented


class _LargeBuffer:
    """Pickles a bytes, bytearray or memoryview as a `PickleBuffer`, which pickle 5 hands to
    the buffer callback (out of band); unpickles as a copy of the original type."""

    __slots__ = ("obj",)

    def __init__(self, obj: bytes | bytearray | memoryview) -> None:
        self.obj = obj

    def __reduce__(self) -> tuple[Any, ...]:
        obj = self.obj
        if type(obj) is memoryview:
            return (_memoryview_of, (pickle.PickleBuffer(obj), obj.format, obj.shape))
        return (type(obj), (pickle.PickleBuffer(obj),))


def _memoryview_of(buffer: Any, format: str, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(buffer)
    if view.format == format and view.shape == shape:
        return view
    shaped: memoryview = view.cast("B").cast(format, shape)  # type: ignore[call-overload]
    return shaped


def _is_large_buffer(value: Any, threshold: int) -> bool:
    kind = type(value)
    if kind is bytes or kind is bytearray:
        return len(value) >= threshold
    return kind is memoryview and value.nbytes >= threshold and value.c_contiguous


def wrap_large_buffers(value: Any, threshold: int) -> Any:
    """`value` with its large bytes-like parts wrapped to go out of band: the value itself,
    or an item of a list, tuple or dict it is. Deeper ones stay in the pickle (a walk of
    every value would cost more than it saves); `value` itself when there is none."""
    if _is_large_buffer(value, threshold):
        return _LargeBuffer(value)
    kind = type(value)
    if kind is list or kind is tuple:
        if any(_is_large_buffer(item, threshold) for item in value):
            return kind(_LargeBuffer(item) if _is_large_buffer(item, threshold) else item for item in value)
    elif kind is dict and any(_is_large_buffer(item, threshold) for item in value.values()):
        return {key: _LargeBuffer(item) if _is_large_buffer(item, threshold) else item for key, item in value.items()}
    return value


def wrap_large_arguments(args: Args, kwargs: Kwargs, threshold: int) -> tuple[tuple[Any, ...], dict[Any, Any]]:
    """`wrap_large_buffers` for each argument: a 1 GB bytes argument took 3.1 GB of the
    parent's memory and 11 s through the pipe (issue 19)."""
    return (tuple(wrap_large_buffers(arg, threshold) for arg in args),
            {name: wrap_large_buffers(value, threshold) for name, value in kwargs.items()})


def _datetime_array(array: Any) -> tuple[Any, ...]:
    """numpy pickles datetime64 / timedelta64 arrays in band (they have no buffer
    protocol): a pandas frame's timestamp column, 16 MB of each ETL partition, went through
    the pipe (issue 22). Sent as its int64 view, out of band, and viewed back."""
    if array.dtype.kind in "mM":
        return (_viewed_as, (array.view("i8") if array.flags.c_contiguous else array.copy().view("i8"), array.dtype))
    reduced: tuple[Any, ...] = array.__reduce_ex__(5)
    return reduced


def _viewed_as(values: Any, dtype: Any) -> Any:
    return values.view(dtype)


def dispatch_table(base: Any = None) -> Any:
    """`base` (copyreg's) plus `_datetime_array` for numpy arrays, once numpy is imported
    (procflow does not need numpy; a process without it pickles as before). Made once per
    base: every result and every call's arguments pickle with it."""
    base = copyreg.dispatch_table if base is None else base
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return base
    table = _TABLES.get(id(base))
    if table is None or table.maps[1] is not base:
        table = _TABLES[id(base)] = collections.ChainMap({numpy.ndarray: _datetime_array}, base)
    return table


_TABLES: dict[int, collections.ChainMap[Any, Any]] = {}


def dumps_fast(value: Any, keep: Callable[[pickle.PickleBuffer], bool] | None) -> bytes:
    """C pickle 5, with datetime arrays out of band too."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5, buffer_callback=keep)
    pickler.dispatch_table = dispatch_table()
    pickler.dump(value)
    return out.getvalue()


class _StdPickler(_BufferPicklerMixin, pickle.Pickler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispatch_table = dispatch_table()


class _CloudPickler(_BufferPicklerMixin, cloudpickle.Pickler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispatch_table = dispatch_table(getattr(self, "dispatch_table", None))


def dumps_out_of_band(value: Any, threshold: int, keep: Callable[[pickle.PickleBuffer], bool] | None) -> bytes:
    """Pickle 5 with large buffers given to `keep` (arrays, bytes-like at the top, any
    memoryview); functions and classes defined in `__main__` (or registered to go by
    value) pickle by value."""
    value = wrap_large_buffers(value, threshold)
    out = io.BytesIO()
    pickler: pickle.Pickler = _StdPickler(out, protocol=5, buffer_callback=keep)
    pickler.threshold = threshold  # type: ignore[attr-defined]
    try:
        pickler.dump(value)
        data = out.getvalue()
        if b"__main__" not in data and not any(name.encode() in data
                                               for name in cloudpickle.list_registry_pickle_by_value()):
            return data
    except (pickle.PicklingError, AttributeError, TypeError):
        pass
    if isinstance(keep, OutOfBand):
        keep.buffers.clear()  # what the first try took out is in this pickle again
    out = io.BytesIO()
    pickler = _CloudPickler(out, protocol=5, buffer_callback=keep)
    pickler.threshold = threshold
    pickler.dump(value)
    return out.getvalue()


class OutOfBand:
    """A pickle 5 `buffer_callback`: buffers of at least `threshold` bytes are taken out of
    the pickle into `buffers`, to travel another way (shared memory)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.buffers: list[pickle.PickleBuffer] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes >= self.threshold:
            self.buffers.append(buffer)
            return False  # out of band
        return True


DYNAMIC_CODE = "<dynamic-code>"  # the file name cloudpickle >= 3.1.3 gives code it sends by value


def dumps_function(fn: Callable[..., Any]) -> bytes:
    """cloudpickle, with the file the function comes from.

    cloudpickle >= 3.1.3 names the file of code sent by value `<dynamic-code>`, so a
    task from a script run by path would fail with a traceback that has no source lines.
    """
    code = getattr(fn, "__code__", None)
    blob: bytes = cloudpickle.dumps((fn, code.co_filename if code is not None else None), protocol=5)
    return blob


def loads_function(blob: bytes) -> Callable[..., Any]:
    """The function, and the script's other functions it calls, named after their file again."""
    fn: Callable[..., Any]
    fn, filename = pickle.loads(blob)
    plain = getattr(fn, "__func__", fn)  # a bound method's function
    if filename is None or filename == DYNAMIC_CODE or not isinstance(plain, types.FunctionType):
        return fn
    helpers = [value for value in plain.__globals__.values()
               if isinstance(value, types.FunctionType) and value.__module__ == plain.__module__]
    for function in [plain, *helpers]:
        if function.__code__.co_filename == DYNAMIC_CODE:
            function.__code__ = _named(function.__code__, filename)
    return fn


def _named(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_named(const, filename) if isinstance(const, types.CodeType) else const
                   for const in code.co_consts)  # nested functions and comprehensions
    return code.replace(co_filename=filename, co_consts=consts)


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
