"""Exceptions across processes: a worker's error made portable, and the parent's side of it.

Some exceptions pickle but cannot be rebuilt (a custom `__init__`); those travel as a
`RemoteError` that keeps the type's name, the message and the traceback text. The process
runner and the Dask runner both use these, on both sides.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

from .exceptions import RemoteError, RemoteTraceback


def portable_error(error: BaseException, text: str) -> bytes:
    """The exception pickled, or a RemoteError keeping its type, message and traceback."""
    try:
        blob: bytes = cloudpickle.dumps(error)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt (custom __init__)
        return blob
    except Exception:  # noqa: BLE001
        remote: bytes = cloudpickle.dumps(RemoteError(type(error).__qualname__, str(error), text))
        return remote


def decode_error(blob: Any, traceback_text: str) -> BaseException:
    """The parent's side of `portable_error`: the exception, with the worker's traceback text
    as its `__cause__` (a `RemoteTraceback`), which is what logs and users see of it."""
    if isinstance(blob, BaseException):
        return blob
    error: BaseException
    try:
        error = pickle.loads(blob)
    except Exception:  # noqa: BLE001
        first = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else "Exception: unknown"
        type_name, _, message = first.partition(": ")
        error = RemoteError(type_name, message, traceback_text)
    if traceback_text and error.__cause__ is None:
        error.__cause__ = RemoteTraceback(traceback_text)
    return error
