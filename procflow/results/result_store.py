"""Prefect's `ResultStore` and `ResultRecord`, over procflow's own store (`store.py`).

A keyed transaction (`transaction(key=...)`) records itself in a store: it begins committed
when the key's entry is there, and writes what it staged when it commits. Users also read
results back by key (`ResultStore().read(key).result`). Entries are procflow's files (a
header, the pickle, its large buffers), with the same safety rules: only this user's
directory and files are read.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

from ..state_values import LazyResult
from . import store as entries
from .entries import Damaged, load_bytes, write_entry
from .store import entry_path, storage_directory, storage_path


class ResultRecordMetadata(LazyResult):
    """Where a record lives (`storage_key`: the path of its entry) and until when it is served.
    As a state's data, `state.result()` reads the value from the entry."""

    def __init__(self, storage_key: str | None = None, expiration: datetime.datetime | None = None,
                 serializer: str = "pickle", storage_block_id: Any = None) -> None:
        self.storage_key, self.expiration = storage_key, expiration
        self.serializer, self.storage_block_id = serializer, storage_block_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultRecordMetadata) and (self.storage_key, self.expiration) == (
            other.storage_key, other.expiration)

    def __repr__(self) -> str:
        return f"ResultRecordMetadata(storage_key={self.storage_key!r}, expiration={self.expiration!r})"

    def load(self) -> Any:
        if not self.storage_key:
            raise ValueError("This result record has no storage key: there is nothing to read")
        path = Path(self.storage_key)
        found = entries.lookup(str(path.parent), path.name, path.name) if path.parent.is_dir() else None
        if found is None:
            raise ValueError(f"No result record found at {path}")
        return found.load()


class ResultRecord(LazyResult):
    """A result and where it is (or is to be) stored; as a state's data, `state.result()` is the result."""

    def __init__(self, result: Any, metadata: ResultRecordMetadata) -> None:
        self.result, self.metadata = result, metadata

    def load(self) -> Any:
        return self.result

    @property
    def expiration(self) -> datetime.datetime | None:
        return self.metadata.expiration

    @classmethod
    def deserialize(cls, data: bytes) -> ResultRecord:
        """Prefect's: the record whose stored bytes are `data` (`LocalFileSystem.read_path(key)`
        of an entry); `ValueError` when they are not a whole procflow result. It unpickles
        them without the store's ownership check: only bytes the caller stored."""
        try:
            header, value = load_bytes(data)
        except Damaged as error:
            raise ValueError(f"not a stored procflow result: {error}") from None
        expiration = (datetime.datetime.fromtimestamp(header.expires, datetime.timezone.utc)
                      if header.expires is not None else None)
        return cls(value, ResultRecordMetadata(storage_key=header.key, expiration=expiration))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultRecord) and self.metadata == other.metadata and _same(self.result,
                                                                                              other.result)

    def __repr__(self) -> str:
        return f"ResultRecord(result={self.result!r}, metadata={self.metadata!r})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays compare element-wise: the same object is the same result
        return a is b


def _key_of(path: Path, directory: Path) -> str:
    """The key an entry's header names: its path under the store's directory, else its name."""
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return path.name


class ResultStore:
    """Results by key in a directory: `result_storage` (a Path or a `LocalFileSystem`), else
    the result store's default (`store.storage_directory`). A `lock_manager` (Prefect's
    interface: `acquire_lock(key, holder, acquire_timeout, hold_timeout)`, `release_lock(key,
    holder)`) lets SERIALIZABLE transactions take a lock per key."""

    def __init__(self, result_storage: Any = None, metadata_storage: Any = None, lock_manager: Any = None,
                 cache_result_in_memory: bool = True, serializer: Any = "pickle", **_: Any) -> None:
        self.result_storage = result_storage
        self.metadata_storage = metadata_storage
        self.lock_manager = lock_manager
        self.cache_result_in_memory = cache_result_in_memory
        self.serializer = serializer

    def __repr__(self) -> str:
        return f"ResultStore(directory={str(self.directory)!r})"

    @property
    def directory(self) -> Path:
        return storage_directory(storage_path("ResultStore", self.result_storage))

    def model_copy(self, update: dict[str, Any] | None = None) -> ResultStore:
        made = ResultStore(self.result_storage, self.metadata_storage, self.lock_manager,
                           self.cache_result_in_memory, self.serializer)
        for name, value in (update or {}).items():
            setattr(made, name, value)
        return made

    # -- records ---------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return entries.lookup(str(self.directory), key, key) is not None

    def read(self, key: str, holder: str | None = None) -> ResultRecord:
        """The record of `key`, once a SERIALIZABLE writer holding its lock is done; ValueError
        when there is none (or it expired)."""
        manager = self.lock_manager
        if manager is not None and manager.is_locked(key) and not manager.is_lock_holder(key, holder):
            manager.wait_for_lock(key)
        found = entries.lookup(str(self.directory), key, key)
        if found is None:
            raise ValueError(f"No result record found for key {key!r} in {self.directory}")
        expires = found.header.expires
        expiration = (datetime.datetime.fromtimestamp(expires, datetime.timezone.utc)
                      if expires is not None else None)
        return ResultRecord(found.load(), ResultRecordMetadata(storage_key=found.path, expiration=expiration))

    def create_result_record(self, obj: Any, key: str | None = None,
                             expiration: datetime.datetime | None = None) -> ResultRecord:
        """A record of `obj` under `key` (a new one when None): its storage key is where its entry goes."""
        where = str(entry_path(self.directory, key or uuid.uuid4().hex))
        return ResultRecord(obj, ResultRecordMetadata(storage_key=where, expiration=expiration))

    def write(self, obj: Any, key: str | None = None, expiration: datetime.datetime | None = None,
              holder: str | None = None) -> None:
        self.persist_result_record(self.create_result_record(obj, key=key, expiration=expiration), holder)

    def persist_result_record(self, result_record: ResultRecord, holder: str | None = None) -> None:
        """Store the record under its key; OSError (or a pickling error) when it cannot be."""
        metadata = result_record.metadata
        where = Path(metadata.storage_key or entry_path(self.directory, uuid.uuid4().hex))
        if not where.is_absolute():  # a key given by hand
            where = entry_path(self.directory, str(where))
        expires = metadata.expiration.timestamp() if metadata.expiration is not None else None
        entries.ensure_directory(where.parent)
        write_entry(where, _key_of(where, self.directory), "result-store", result_record.result, 0.0, expires)

    # -- locks (SERIALIZABLE) --------------------------------------------------------------

    def supports_isolation_level(self, level: Any) -> bool:
        """READ_COMMITTED always; SERIALIZABLE with a lock manager (`transactions.IsolationLevel`)."""
        return str(getattr(level, "value", level)) == "READ_COMMITTED" or self.lock_manager is not None

    def acquire_lock(self, key: str, holder: str | None = None, timeout: float | None = None) -> bool:
        if self.lock_manager is None:
            return True
        return bool(self.lock_manager.acquire_lock(key, holder=holder, acquire_timeout=timeout))

    def release_lock(self, key: str, holder: str | None = None) -> None:
        if self.lock_manager is not None:
            self.lock_manager.release_lock(key, holder=holder)

    def is_locked(self, key: str) -> bool:
        return self.lock_manager is not None and bool(self.lock_manager.is_locked(key))

    # -- the same, awaited -----------------------------------------------------------------

    async def aexists(self, key: str) -> bool:
        return self.exists(key)

    async def aread(self, key: str, holder: str | None = None) -> ResultRecord:
        return self.read(key, holder)

    async def awrite(self, obj: Any, key: str | None = None, expiration: datetime.datetime | None = None,
                     holder: str | None = None) -> None:
        self.write(obj, key, expiration, holder)

    async def apersist_result_record(self, result_record: ResultRecord, holder: str | None = None) -> None:
        self.persist_result_record(result_record, holder)

