"""The parent's side of shared memory: the reuse pool of freed segments, and how much is in use."""

from __future__ import annotations

import os
import threading

from .ownership import SHM_DIR, current_token, owned_segments
from .messages import Segment
from .shm import size_class, unlink


class SegmentPool:
    """Freed segments by size class, lent to workers for their next results.

    On tmpfs, writing fresh pages runs ~10x slower than pages already allocated, so
    steady-state pipelines reuse segments. Bounded; `clear()` unlinks everything.
    """

    def __init__(self, max_bytes: int = 2 << 30, per_class: int = 4) -> None:
        self.max_bytes = max_bytes
        self.per_class = per_class
        self._free: dict[int, list[Segment]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def give_back(self, segment: Segment) -> None:
        with self._lock:
            shelf = self._free.setdefault(segment.size, [])
            if len(shelf) < self.per_class and self._bytes + segment.size <= self.max_bytes:
                shelf.append(segment)
                self._bytes += segment.size
                return
        unlink(segment.name)

    def lend(self, nbytes: int) -> Segment | None:
        with self._lock:
            shelf = self._free.get(size_class(nbytes))
            if not shelf:
                return None
            segment = shelf.pop()
            self._bytes -= segment.size
            return segment

    def clear(self) -> None:
        with self._lock:
            segments = [segment for shelf in self._free.values() for segment in shelf]
            self._free.clear()
            self._bytes = 0
        for segment in segments:
            unlink(segment.name)


def shm_used_bytes(token: str | None = None) -> int:
    """Bytes in the segments of owner `token` (this process's when None)."""
    total = 0
    for name in owned_segments(token or current_token()):
        try:
            total += os.stat(os.path.join(SHM_DIR, name)).st_size
        except FileNotFoundError:
            pass
    return total
