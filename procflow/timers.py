"""The engine's timed events (retry delays, run deadlines): one heap, no thread per timer."""

from __future__ import annotations

import heapq
import itertools
from typing import NamedTuple


class Timer(NamedTuple):
    when: float
    order: int
    kind: str  # "retry" | "deadline"
    run_id: int
    attempt: int  # the run attempt it belongs to; a later attempt makes it stale


class Timers:
    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._order = itertools.count()

    def push(self, when: float, kind: str, run_id: int, attempt: int) -> None:
        heapq.heappush(self._heap, Timer(when, next(self._order), kind, run_id, attempt))

    def due(self, now: float) -> list[Timer]:
        """Timers whose time has come, earliest first (removed)."""
        ready = []
        while self._heap and self._heap[0].when <= now:
            ready.append(heapq.heappop(self._heap))
        return ready

    def wait(self, now: float) -> float | None:
        """Seconds until the next timer; None when there is none."""
        return max(0.0, self._heap[0].when - now) if self._heap else None

    def clear(self) -> list[Timer]:
        """Remove every timer; returns them."""
        removed, self._heap = self._heap, []
        return removed
