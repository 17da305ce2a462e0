"""The process runner's shared-memory bookkeeping: what it lends, what workers wrote, what it frees.

Process-wide: the pool of freed segments, and per task function the size of its last
large result, so that its next run is lent a segment that size. Per flow run: the
segments the parent wrote for large arguments of the runs in flight (`ArgumentSegments`).
What a dead worker made and never reported is removed from its list (`directory.py`),
never by guessing from names: several flow runs of one process share the workers.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..messages import Outcome, Segment, WorkItem
from ..shm import ResultRef, SegmentWriter, unlink
from ..shm_pool import SegmentPool
from ..spill import SPILL_LOCK, forget_spilled
from ..states import LazyResult

SEGMENT_POOL = SegmentPool()
_RESULT_SIZES: dict[str, int] = {}  # function key -> segment size of its last large result


class SegmentLedger:
    """The segments of one flow run on the process runner."""

    def __init__(self, keep_seconds: float | None) -> None:
        self._keep_seconds = keep_seconds  # how long the freed segments outlive the last flow run
        self._open = True
        SEGMENT_POOL.open()

    def lend(self, items: Iterable[WorkItem]) -> tuple[tuple[Segment, ...], tuple[int, ...]]:
        """For a batch's runs whose function made a large result before: pooled segments,
        and the sizes the pool has none of (the worker prepares fresh ones meanwhile). Fused
        followers too: what a run leaves unwritten (it failed, or did not run) comes back.
        """
        if not _RESULT_SIZES:  # no task has made a large result yet: the common case
            return (), ()
        lent, expected = [], []
        sizes = (_RESULT_SIZES.get(item.fn_key) for item in items)
        for size in filter(None, sizes):
            segment = SEGMENT_POOL.lend(size)
            if segment is not None:
                lent.append(segment)
            else:
                expected.append(size)
        return tuple(lent), tuple(expected)

    def received(self, result: Any, fn_key: str) -> None:
        if isinstance(result, ResultRef) and result.segment is not None:
            _RESULT_SIZES[fn_key] = result.segment.size

    def return_unused(self, lent: tuple[Segment, ...], outcomes: list[Outcome]) -> None:
        """Lent segments the batch did not write into go back to the pool."""
        used = {o.value.segment.name for o in outcomes if isinstance(o.value, ResultRef) and o.value.segment}
        for segment in lent:
            if segment.name not in used:
                SEGMENT_POOL.give_back(segment)

    def release(self, result: LazyResult) -> None:
        """Nobody can read `result` any more: its segment goes back to the pool."""
        if not isinstance(result, ResultRef) or result.segment is None:
            return
        with SPILL_LOCK:  # a spill that is finishing either made it spilled, or sees it released
            result.released = True  # a run record may still hold it: it must not read the next result
        if result.spilled:  # on disk: its segment is gone already
            forget_spilled(result)
        elif result.loaded:  # the parent maps it: a reused segment would change the user's unwritten pages
            unlink(result.segment.name)
        else:
            SEGMENT_POOL.give_back(result.segment)

    def close(self) -> None:
        """End of the flow run: the pool is emptied when no flow run uses it, at once or after
        the idle time of a runner that keeps segments between runs."""
        if self._open:
            self._open = False
            SEGMENT_POOL.close(self._keep_seconds)


_Key = tuple[tuple[str, int], int]  # (("map", its group) or ("run", its id), id of the buffer's owner)


@dataclass(slots=True)
class _Written:
    segment: Segment
    exporter: Any  # the array (or other buffer owner) written: held so its id stays its own
    users: set[int] = field(default_factory=set)  # runs in flight that read it


class ArgumentSegments:
    """Large buffers of the arguments the flow passes (arrays), written by the parent.

    Through the pipe, each run would get its own pickled copy: ~1 s per 256 MB here.
    Instead a buffer is written to a segment once per run, or once per `.map()` for an
    object its children share (`unmapped(array)`); the workers map it copy-on-write.
    A segment is unlinked when the last run reading it has returned (a map keeps its few
    most recent, up to 1 GiB, for its next children), and never pooled: a copy-on-write
    mapping still reads the pages its task has not written.
    """

    IDLE_MAPPED, IDLE_BYTES = 4, 1 << 30  # a map's shared buffers kept between waves of its children

    def __init__(self, writer: SegmentWriter) -> None:
        self._writer = writer
        self._written: dict[_Key, _Written] = {}
        self._reads: dict[int, list[_Key]] = {}  # run -> keys of what it reads
        self._idle: list[_Key] = []  # a map's buffers no run reads right now
        self._lock = threading.Lock()

    def share(self, run_id: int, map_group: int | None,
              buffers: list[pickle.PickleBuffer]) -> tuple[tuple[Segment, int], ...] | None:
        """Segments holding `buffers` for the run, as (segment, size); None when /dev/shm lacks room.

        Called by the engine's thread only; `finished` comes from loky's, hence the lock.
        """
        scope = ("map", map_group) if map_group is not None else ("run", run_id)
        shared = []
        for buffer in buffers:
            raw = buffer.raw()
            key = (scope, id(raw.obj))
            with self._lock:
                written = self._written.get(key)
                if written is not None:
                    self._read_by(run_id, key, written)
            if written is None:
                written = self._write(raw)  # the copy, outside the lock
                if written is None:
                    self.finished([run_id])
                    return None
                with self._lock:
                    self._written[key] = written
                    self._read_by(run_id, key, written)
            shared.append((written.segment, raw.nbytes))
        return tuple(shared)

    def _read_by(self, run_id: int, key: _Key, written: _Written) -> None:
        if run_id in written.users:  # one owner exporting two buffers to the same run
            return
        if not written.users and key in self._idle:
            self._idle.remove(key)
        written.users.add(run_id)
        self._reads.setdefault(run_id, []).append(key)

    def _write(self, raw: memoryview) -> _Written | None:
        pooled = SEGMENT_POOL.lend(raw.nbytes)
        lent = [pooled] if pooled is not None else []
        written = self._writer.write_buffers([raw], lent)
        if lent:  # not taken: back to the pool
            SEGMENT_POOL.give_back(lent[0])
        return None if written is None else _Written(written[0], raw.obj)

    def finished(self, run_ids: Iterable[int]) -> None:
        """These runs returned (or never went): what no run reads any more is unlinked; a
        map's few most recent buffers wait for its next children."""
        gone = []
        with self._lock:
            for run_id in run_ids:
                for key in self._reads.pop(run_id, ()):
                    written = self._written.get(key)
                    if written is None:
                        continue
                    written.users.discard(run_id)
                    if written.users:
                        continue
                    if key[0][0] == "map":
                        self._idle.append(key)
                    else:
                        gone.append(self._written.pop(key))
            while len(self._idle) > self.IDLE_MAPPED or (self._idle and self._idle_bytes() > self.IDLE_BYTES):
                gone.append(self._written.pop(self._idle.pop(0)))
        for written in gone:
            unlink(written.segment.name)

    def _idle_bytes(self) -> int:
        return sum(self._written[key].segment.size for key in self._idle)

    def close(self) -> None:
        """End of the flow run: unlink them all (a task still running keeps its mapping)."""
        with self._lock:
            gone = list(self._written.values())
            self._written.clear()
            self._reads.clear()
            self._idle.clear()
        for written in gone:
            unlink(written.segment.name)
