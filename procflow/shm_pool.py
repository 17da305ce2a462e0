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
    steady-state pipelines reuse segments. Bounded (by bytes: a quarter of /dev/shm, at most
    2 GiB; and by count per size class). Flow runs `open()` and `close()` it: when the last
    one closes, the pool is emptied, or, for a runner that keeps segments between runs, kept
    for `idle_seconds` and emptied then unless a flow run opened it meanwhile (SPEC §3: held
    warm only while the process is busy). `clear()` unlinks everything.
    """

    def __init__(self, max_bytes: int | None = None, per_class: int = 4) -> None:
        self.max_bytes = max_bytes if max_bytes is not None else _default_bound()
        self.per_class = per_class
        self._free: dict[int, list[Segment]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._users = 0  # flow runs open now
        self._idle_timer: threading.Timer | None = None

    def open(self) -> None:
        """A flow run begins to use the pool: an idle release pending is called off."""
        with self._lock:
            self._users += 1
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

    def close(self, keep_seconds: float | None) -> None:
        """A flow run is done with the pool. The last one out empties it, at once, or after
        `keep_seconds` without a flow run (None: at once)."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or not self._free:
                return
            if keep_seconds is not None:
                timer = self._idle_timer = threading.Timer(keep_seconds, self._release_idle)
                timer.daemon = True
                timer.name = "procflow-segment-pool-idle"
                timer.start()
                return
        self.clear()

    def _release_idle(self) -> None:
        with self._lock:
            if self._users or self._idle_timer is None:
                return  # a flow run opened it again
            self._idle_timer = None
        self.clear()

    def give_back(self, segment: Segment) -> None:
        """Kept for reuse while a flow run uses the pool or its idle time runs; else unlinked
        (a batch that reports after its flow run ended must not refill a pool nobody empties)."""
        with self._lock:
            in_use = self._users or self._idle_timer is not None
            shelf = self._free.setdefault(segment.size, [])
            if in_use and len(shelf) < self.per_class and self._bytes + segment.size <= self.max_bytes:
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
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
        for segment in segments:
            unlink(segment.name)


def _default_bound() -> int:
    """A quarter of /dev/shm (a shared machine's other users need it too), at most 2 GiB."""
    try:
        stats = os.statvfs(SHM_DIR)
        return min(2 << 30, stats.f_blocks * stats.f_frsize // 4)
    except OSError:
        return 2 << 30


def shm_used_bytes(token: str | None = None) -> int:
    """Bytes in the segments of owner `token` (this process's when None)."""
    total = 0
    for name in owned_segments(token or current_token()):
        try:
            total += os.stat(os.path.join(SHM_DIR, name)).st_size
        except FileNotFoundError:
            pass
    return total
