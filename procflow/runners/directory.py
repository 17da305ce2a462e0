"""The process runner's private directory: worker scoreboards, what workers are making, task pickles.

It is `ownership.Owner.directory` (`mkdtemp`, 0700, random; issue 15), shared by every
flow run of the process, as the worker pool is. In it, per worker pid:

- `<pid>`: the worker's scoreboard (`worker_process.BOARD_FORMAT`: the run it executes, since when);
- `made-<pid>`: the segments the worker created in the batch it is running, each named
  before it exists and the list emptied before the batch's outcomes go back. A worker
  that dies mid-batch leaves exactly its unreported segments there, for `orphans()`.

and per task function `fn-<key>`: its pickle, written once, read once per worker. Files
are created 0600 and atomically; a file or the whole directory that a tmp cleaner removed
is written again at the next flow run (`FunctionFiles.verify`).
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
import weakref
from typing import Any, Callable

from ..ownership import Owner, create_file
from ..pickling import dumps_function
from ..shm import unlink
from ..worker_process import BOARD_FORMAT, BOARD_SIZE, MADE_PREFIX


class WorkerBoards:
    """The scoreboards of this process's workers, and the segments a dead one left unreported."""

    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    @property
    def dir(self) -> str:
        return self._owner.directory

    def read(self) -> dict[int, tuple[int, float]]:
        """worker pid -> (run id, start time); run id 0 when idle."""
        directory = self.dir
        boards = {}
        for entry in os.listdir(directory):
            if not entry.isdigit():
                continue
            try:
                with open(os.path.join(directory, entry), "rb") as file:
                    data = file.read(BOARD_SIZE)
            except FileNotFoundError:
                continue
            if len(data) == BOARD_SIZE:
                boards[int(entry)] = struct.unpack(BOARD_FORMAT, data)
        return boards

    def remove_orphans(self, pid: int) -> list[str]:
        """Unlink the segments dead worker `pid` made in the batch it never finished."""
        try:
            with open(os.path.join(self.dir, f"{MADE_PREFIX}{pid}"), encoding="ascii") as file:
                names = file.read().split()
        except (FileNotFoundError, UnicodeDecodeError):
            return []
        for name in names:
            unlink(name)
        return names

    def remove_orphans_of_dead(self, alive: Callable[[int], bool]) -> None:
        """Every dead worker's unreported segments (workers killed at Ctrl-C, or at a timeout)."""
        for entry in os.listdir(self.dir):
            pid = entry[len(MADE_PREFIX):]
            if entry.startswith(MADE_PREFIX) and pid.isdigit() and not alive(int(pid)):
                self.remove_orphans(int(pid))
                self.forget(int(pid))

    def forget(self, pid: int, made: bool = True) -> None:
        for name in (str(pid), f"{MADE_PREFIX}{pid}") if made else (str(pid),):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass


class FunctionFiles:
    """Each task function pickled once per process into the directory; messages carry its key."""

    def __init__(self) -> None:
        self._keys: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._blobs: dict[str, bytes] = {}
        self._written: dict[str, str] = {}  # key -> the directory it was written into
        self._lock = threading.Lock()

    def key(self, fn: Callable[..., Any], task_name: str, directory: str) -> str:
        with self._lock:
            key = self._keys.get(fn)
            if key is not None and self._written.get(key) == directory:
                return key
        if key is None:
            try:
                blob = dumps_function(fn)
            except Exception as error:
                raise TypeError(f"task {task_name!r}: its function cannot be pickled: {error}") from error
            key = uuid.uuid4().hex
            with self._lock:
                self._keys[fn], self._blobs[key] = key, blob
            weakref.finalize(fn, self._forget, key)
        self._write(key, directory)
        return key

    def verify(self, directory: str) -> None:
        """Write again what a tmp cleaner removed (or what belongs in a new directory)."""
        with self._lock:
            keys = list(self._written.items())
        for key, written_to in keys:
            if written_to != directory or not os.path.exists(os.path.join(directory, f"fn-{key}")):
                self._write(key, directory)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(key, None)
            self._written.pop(key, None)

    def _write(self, key: str, directory: str) -> None:
        with self._lock:
            blob = self._blobs[key]
        create_file(os.path.join(directory, f"fn-{key}"), blob)
        with self._lock:
            self._written[key] = directory
