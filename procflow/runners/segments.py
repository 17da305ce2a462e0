"""The process runner's shared-memory bookkeeping: what it lends, what workers wrote, what it frees.

Process-wide: the pool of freed segments, and per task function the size of its last
large result, so that its next run is lent a segment that size. Per flow run: the
segments of the results received, so that the end of the run can tell them from orphans
a dead worker wrote and never reported.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..messages import Outcome, WorkItem
from ..shm import ResultRef, Segment, unlink
from ..shm_pool import SegmentPool, owned_segments
from ..states import LazyResult
from .crashes import alive

SEGMENT_POOL = SegmentPool()
_RESULT_SIZES: dict[str, int] = {}  # function key -> segment size of its last large result


class SegmentLedger:
    """The segments of one flow run on the process runner."""

    def __init__(self, owner: int, keep_between_runs: bool) -> None:
        self._owner = owner
        self._keep_between_runs = keep_between_runs
        self._known: set[str] = set()

    def lend(self, items: Iterable[WorkItem]) -> tuple[tuple[Segment, ...], tuple[int, ...]]:
        """For a batch's runs whose function made a large result before: pooled segments,
        and the sizes the pool has none of (the worker prepares fresh ones meanwhile).

        Fused followers get none: one behind a run whose result went to shared memory is
        handed back unrun, so a fused chain would otherwise hold a segment per link.
        """
        if not _RESULT_SIZES:  # no task has made a large result yet: the common case
            return (), ()
        lent, expected = [], []
        sizes = (_RESULT_SIZES.get(item.fn_key) for item in items if not item.after)
        for size in filter(None, sizes):
            segment = SEGMENT_POOL.lend(size)
            if segment is not None:
                lent.append(segment)
            else:
                expected.append(size)
        return tuple(lent), tuple(expected)

    def received(self, result: Any, fn_key: str) -> None:
        if isinstance(result, ResultRef) and result.segment is not None:
            self._known.add(result.segment.name)
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
        self._known.discard(result.segment.name)
        if result.loaded:  # the parent maps it: a reused segment would change the user's value
            unlink(result.segment.name)
        else:
            SEGMENT_POOL.give_back(result.segment)

    def close(self) -> None:
        """End of the flow run: empty the pool (unless kept), unlink what dead workers left."""
        if not self._keep_between_runs:
            SEGMENT_POOL.clear()
        for name in owned_segments(self._owner):
            worker = name.split("-")[2]
            if name not in self._known and not SEGMENT_POOL.holds(name) and not alive(int(worker, 36)):
                unlink(name)
