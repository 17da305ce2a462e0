"""Prefect's `LocalFileSystem` block, as a plain value: a local directory for `result_storage`.

Prefect keeps blocks in its server; procflow has none, so `save()` keeps nothing and a block is
just its `basepath`: `@task(result_storage=LocalFileSystem(basepath="/data/results"))` stores
the task's results there (`caching.storage_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .asyncdispatch import async_dispatch


class LocalFileSystem:
    def __init__(self, basepath: str | Path | None = None, **_: Any) -> None:
        self.basepath = str(Path(basepath).expanduser()) if basepath is not None else None

    async def _asave(self, name: str | None = None, overwrite: bool = False, **_: Any) -> None:
        return None

    @async_dispatch(_asave)
    def save(self, name: str | None = None, overwrite: bool = False, **_: Any) -> None:
        """Nothing to save: there is no server (a block is its directory)."""
        return None

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"
