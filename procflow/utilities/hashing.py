"""Prefect's import path `prefect.utilities.hashing`: stable hashes of text, bytes and files."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Callable

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
