"""procflow's worker pool: one single-worker loky executor per worker (a *slot*).

With one shared call queue any idle worker takes the next message, and one dead worker
breaks the whole pool: loky fails every batch in flight (their runs are run again) and
starts every worker again (each imports the user's modules again). With a slot per worker
the parent chooses where each batch goes, so

- a worker's crash, or its kill at a task's timeout, breaks only its own slot: the runs on
  the other workers go on and their workers stay warm;
- `max_tasks_per_worker` renews the worker that spent its runs, alone and once it is idle;
- a batch can be sent where its inputs are (locality, issue 22).

Slots are shared by the flow runs of this process, like the pool was: each slot counts every
flow run's batches in flight, so concurrent flow runs spread over the same workers. A batch
goes to the slot expected to be free soonest, which keeps short runs from queueing behind a
long one while another worker is free (with one shared queue, a free worker took them).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from itertools import islice
from typing import Any, Callable

from loky import ProcessPoolExecutor


class WorkerSlots:
    """`count` slots; `make()` builds one single-worker executor (a broken or shut one is
    built again when a batch is next sent to it)."""

    def __init__(self, count: int, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._executors = [make() for _ in range(count)]
        # Each slot's batches in flight, every flow run's, oldest (running) first: [since, seconds
        # expected or None]; `since` is when it was sent, or when the batch before it ended.
        self._flight: list[deque[list[Any]]] = [deque() for _ in range(count)]
        self._spent: set[int] = set()  # its worker ran its max_tasks_per_worker: renewed when idle
        self._unstarted = True  # an executor was built whose worker has not started yet

    def _takes_batches(self, index: int) -> bool:
        """Not spent, or spent and idle (the next batch renews it first)."""
        return index not in self._spent or not self._flight[index]

    def choose(self) -> int:
        """The slot for the next batch: the one expected to be free soonest (`free_in`), then
        the least loaded; a spent one only when it is idle (it is renewed first) or every
        slot is spent."""
        now = time.monotonic()
        with self._lock:
            usable = [index for index in range(len(self._executors))
                      if self._takes_batches(index)] or list(range(len(self._executors)))
            return min(usable, key=lambda index: (self._free_in(index, now), len(self._flight[index]), index))

    def _free_in(self, index: int, now: float) -> float:
        """Seconds until slot `index` has run what it holds, estimated. A queued batch takes
        what it is expected to; the running one that less what it ran, or, once past it (or
        with no time known yet), as long again as it ran so far: a long run likely goes on,
        and a batch sent behind it would wait while another worker is free (head-of-line)."""
        flight = self._flight[index]
        if not flight:
            return 0.0
        since, expected = flight[0]
        ran = max(0.0, now - since)
        total = expected - ran if expected is not None and ran < expected else max(ran, expected or 0.0)
        for _, later in islice(flight, 1, None):
            total += later if later is not None else ran
        return float(total)

    def room(self, per_slot: int, queue_behind: float, batch_seconds: float | None) -> int:
        """How many batches the slots take now. An idle slot takes one; more, up to `per_slot`,
        only behind work of known length that ends within `queue_behind` seconds (batches of
        `batch_seconds` each, None: not known yet). A queued batch hides the round trip through
        the parent for tiny runs; behind a long run, or one of unknown length, it would wait
        while another worker may be free (a worker's queue is its own: a batch sent stays)."""
        now = time.monotonic()
        tiny = batch_seconds is not None and batch_seconds <= queue_behind
        with self._lock:
            total = 0
            for index, flight in enumerate(self._flight):
                if not self._takes_batches(index):
                    continue
                if not flight:
                    total += per_slot if tiny else 1
                elif len(flight) < per_slot and all(expected is not None for _, expected in flight) \
                        and self._free_in(index, now) <= queue_behind:
                    total += per_slot - len(flight)
            return total

    def submit(self, index: int, fn: Callable[..., Any], *args: Any,
               expected: float | None = None) -> tuple[Any, ProcessPoolExecutor]:
        """Send to slot `index` a batch expected to take `expected` seconds (None: not known):
        its loky future and the executor it went to (crashes are looked up by executor). A
        broken, shut or spent-and-idle slot gets a fresh executor."""
        with self._lock:
            executor = self._executors[index]
            flags = executor._flags
            renew = index in self._spent and not self._flight[index]
            if renew or flags.broken is not None or flags.shutdown:
                executor = self._renew(index, executor, wait=renew)
            entry = [time.monotonic(), expected]
            self._flight[index].append(entry)
            if self._unstarted:
                self._start_all()
        try:
            try:
                return executor.submit(fn, *args), executor
            except RuntimeError:  # broken or shut down between the check and the call: once more
                with self._lock:
                    executor = self._renew(index, executor, wait=False)
                return executor.submit(fn, *args), executor
        except BaseException:
            with self._lock:  # it is not in flight: the slot must not look busy for ever
                flight = self._flight[index]
                del flight[next(at for at, item in enumerate(flight) if item is entry)]
            raise

    def _start_all(self) -> None:
        """Every worker starts with a batch, as a shared pool's did: a fan-out that comes after
        a lone first run does not wait for its workers' interpreters, and after a cancel (every
        slot shut) the pool comes back whole."""
        for index, executor in enumerate(self._executors):
            if executor._flags.shutdown:  # shut or broken
                executor = self._renew(index, executor, wait=False)
            if executor._executor_manager_thread is None:
                executor._ensure_executor_running()
        self._unstarted = False

    def done(self, index: int) -> None:
        """A batch of slot `index` is back: a worker runs its batches in the order sent."""
        with self._lock:
            flight = self._flight[index]
            flight.popleft()
            if flight:  # the next one runs from now
                flight[0][0] = max(flight[0][0], time.monotonic())

    def spent(self, index: int) -> None:
        """Its worker answered that it ran its runs: it takes no batch until renewed."""
        with self._lock:
            self._spent.add(index)

    def _renew(self, index: int, old: ProcessPoolExecutor, wait: bool) -> ProcessPoolExecutor:
        old.shutdown(wait=wait, kill_workers=bool(old._flags.broken))
        self._spent.discard(index)
        self._executors[index] = fresh = self._make()
        self._unstarted = True
        return fresh

    def warm_up(self) -> None:
        """Start every worker now (a slot otherwise starts its worker with its first batch)."""
        sent = []
        try:
            for index in range(len(self._executors)):
                sent.append((index, self.submit(index, os.getpid)[0]))
            for _, future in sent:
                future.result()
        finally:
            for index, _ in sent:
                self.done(index)

    def pids(self) -> set[int]:
        """The worker processes of every slot now."""
        with self._lock:
            executors = list(self._executors)
        return {pid for executor in executors for pid in list(getattr(executor, "_processes", None) or {})}

    def shutdown(self, wait: bool, kill_workers: bool = False) -> None:
        with self._lock:
            executors = list(self._executors)
        for executor in executors:
            executor.shutdown(wait=wait, kill_workers=kill_workers or bool(executor._flags.broken))
