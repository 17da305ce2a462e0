"""Prefect's `LocalFileSystem` block, as a plain value: a local directory for `result_storage`.

Prefect keeps blocks in its server; procflow has none, so `save()` keeps nothing and a block is
just its `basepath`: `@task(result_storage=LocalFileSystem(basepath="/data/results"))` stores
the task's results there (`results.store.storage_path`).
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

    async def _save(self, name: str | None = None, is_anonymous: bool = False, overwrite: bool = False,
                    **_: Any) -> None:
        return None

    def _path(self, path: str) -> Path:
        base = Path(self.basepath) if self.basepath is not None else Path.cwd()
        return Path(path) if Path(path).is_absolute() else base / path

    async def _aread_path(self, path: str) -> bytes:
        return self._read(path)

    @async_dispatch(_aread_path)
    def read_path(self, path: str) -> bytes:
        """The bytes of a file under `basepath` (Prefect's); ValueError when it is not there."""
        return self._read(path)

    def _read(self, path: str) -> bytes:
        where = self._path(path)
        if not where.exists():
            raise ValueError(f"Path {where} does not exist.")
        return where.read_bytes()

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"
