"""procflow's worker pool: one single-worker loky executor per worker (a *slot*).

With one shared call queue any idle worker takes the next message, and one dead worker
breaks the whole pool: loky fails every batch in flight (their runs are run again) and
starts every worker again (each imports the user's modules again). With a slot per worker
the parent chooses where each batch goes, so

- a worker's crash, or its kill at a task's timeout, breaks only its own slot: the runs on
  the other workers go on and their workers stay warm;
- `max_tasks_per_worker` renews the worker that spent its runs, alone and once it is idle;
- a batch can be sent where its inputs are (locality, issue 22).

Slots are shared by the flow runs of this process, like the pool was: `load` counts every
flow run's batches, so concurrent flow runs spread over the same workers.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from loky import ProcessPoolExecutor


class WorkerSlots:
    """`count` slots; `make()` builds one single-worker executor (a broken or shut one is
    built again when a batch is next sent to it)."""

    def __init__(self, count: int, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._executors = [make() for _ in range(count)]
        self.load = [0] * count  # batches in flight on each slot, every flow run's
        self._spent: set[int] = set()  # its worker ran its max_tasks_per_worker: renewed when idle

    def __len__(self) -> int:
        return len(self._executors)

    def choose(self) -> int:
        """The slot for the next batch: the least loaded; a spent one only when it is idle (it
        is renewed first) or every slot is spent."""
        with self._lock:
            usable = [index for index in range(len(self._executors))
                      if index not in self._spent or self.load[index] == 0] or list(range(len(self._executors)))
            return min(usable, key=lambda index: (self.load[index], index))

    def usable(self) -> bool:
        """A slot can take a batch now without waiting for a spent worker to finish."""
        with self._lock:
            return any(index not in self._spent or self.load[index] == 0 for index in range(len(self._executors)))

    def submit(self, index: int, fn: Callable[..., Any], *args: Any) -> tuple[Any, ProcessPoolExecutor]:
        """Send to slot `index`: its loky future and the executor it went to (crashes are
        looked up by executor). A broken, shut or spent-and-idle slot gets a fresh executor."""
        with self._lock:
            executor = self._executors[index]
            flags = executor._flags
            renew = index in self._spent and self.load[index] == 0
            if renew or flags.broken is not None or flags.shutdown:
                executor = self._renew(index, executor, wait=renew)
            self.load[index] += 1
        try:
            return executor.submit(fn, *args), executor
        except RuntimeError:  # broken or shut down between the check and the call: once more
            with self._lock:
                executor = self._renew(index, executor, wait=False)
            return executor.submit(fn, *args), executor

    def done(self, index: int) -> None:
        with self._lock:
            self.load[index] -= 1

    def spent(self, index: int) -> None:
        """Its worker answered that it ran its runs: it takes no batch until renewed."""
        with self._lock:
            self._spent.add(index)

    def _renew(self, index: int, old: ProcessPoolExecutor, wait: bool) -> ProcessPoolExecutor:
        old.shutdown(wait=wait, kill_workers=bool(old._flags.broken))
        self._spent.discard(index)
        self._executors[index] = fresh = self._make()
        return fresh

    def warm_up(self) -> None:
        """Start every worker now (a slot otherwise starts its worker with its first batch)."""
        import os

        futures = [self.submit(index, os.getpid) for index in range(len(self._executors))]
        try:
            for future, _ in futures:
                future.result()
        finally:
            for index in range(len(self._executors)):
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

    @property
    def broken(self) -> bool:
        """Every slot is broken or shut (its next batch builds it again)."""
        with self._lock:
            return all(executor._flags.broken is not None or executor._flags.shutdown for executor in self._executors)
