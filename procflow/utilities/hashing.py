"""Prefect's import path `prefect.utilities.hashing`: stable hashes of text, bytes, files and objects."""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Callable

import cloudpickle

_md5 = functools.partial(hashlib.md5, usedforsecurity=False)


def stable_hash(*args: str | bytes, hash_algo: Callable[..., Any] = _md5) -> str:
    """The hex digest of the arguments, strings taken as UTF-8 (the same in every process)."""
    digest = hash_algo()
    for item in args:
        digest.update(item.encode() if isinstance(item, str) else item)
    return str(digest.hexdigest())


def file_hash(path: str, hash_algo: Callable[..., Any] = _md5) -> str:
    """A stable hash of a file's contents: a flow's default `version` (Prefect's)."""
    return stable_hash(Path(path).read_bytes(), hash_algo=hash_algo)


class HashError(ValueError):
    """Objects that neither JSON nor pickle can serialize, so they cannot be hashed (Prefect's)."""


def hash_objects(*args: Any, hash_algo: Callable[..., Any] = _md5, raise_on_failure: bool = False,
                 **kwargs: Any) -> str | None:
    """A hash of the objects that is the same in every process, as Prefect's: their JSON with
    sorted keys, else their pickle (sets sorted, large buffers hashed where they lie, not copied).
    None, or HashError with `raise_on_failure`, when neither can serialize them."""
    try:
        return stable_hash(json.dumps((args, kwargs), sort_keys=True, default=_no_json).encode(),
                           hash_algo=hash_algo)
    except Exception as error:  # noqa: BLE001 - any failure: try the pickle
        json_error = str(error)
    digest = hash_algo()
    try:
        _HashingPickler(digest).dump((args, kwargs))
        return str(digest.hexdigest())
    except Exception as error:  # noqa: BLE001
        pickle_error = str(error)
    if raise_on_failure:
        raise HashError("Unable to create hash - objects could not be serialized.\n"
                        f"  JSON error: {json_error}\n  Pickle error: {pickle_error}")
    return None


def _no_json(value: Any) -> Any:
    raise TypeError(f"Unable to serialize unknown type: {type(value)}")


class _Feed:
    """A file that feeds what is written into a hash."""

    def __init__(self, digest: Any) -> None:
        self.write = digest.update


class _HashingPickler(cloudpickle.Pickler):
    """Pickle 5 into the hash: large buffers are fed as they lie (no copy of an array), and a
    set's items in sorted order (its iteration order changes between processes)."""

    def __init__(self, digest: Any) -> None:
        super().__init__(_Feed(digest), protocol=5, buffer_callback=self._buffer)
        self._digest = digest

    def _buffer(self, buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        self._digest.update(raw.nbytes.to_bytes(8, "little"))
        self._digest.update(raw)
        return False

    def persistent_id(self, obj: Any) -> Any:
        """Sets as their sorted items (pickle itself writes sets and dicts before any override)."""
        kind = type(obj)
        if (kind is set or kind is frozenset) and len(obj) > 1:
            try:
                ordered = sorted(obj)
            except TypeError:
                ordered = sorted(obj, key=repr)
            return (kind.__name__, ordered)
        return None
