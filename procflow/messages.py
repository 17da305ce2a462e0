"""The only things that cross between parent and workers: small frozen messages.

`Batch` goes to a worker (several ready runs, each function pickled once per batch and
loaded once per worker); a list of `Outcome` comes back, one per run. Never futures,
locks, tasks or flows. NamedTuples: they pickle at C speed (a frozen slotted dataclass
pickles through `dataclasses.fields()`, which showed up in the chain benchmark).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple


class Persist(NamedTuple):
    """Sent with a run whose result is to be stored: where, under which key, until when."""

    directory: str
    key: str
    task: str
    expires: float | None  # time.time() after which the entry is not served (cache_expiration)


class Segment(NamedTuple):
    """A shared-memory segment: its name (`ownership.segment_name`) and its size in bytes."""

    name: str
    size: int


class SharedArguments(NamedTuple):
    """A run's pickled arguments whose large buffers the parent put in shared memory."""

    data: bytes
    buffers: tuple[tuple[Segment, int], ...]  # (segment, size) per out-of-band buffer, in order


class Status(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"
    LOST = "lost"  # in flight when another run crashed the pool: run it again, no retry spent
    DEFERRED = "deferred"  # fused behind a run that did not complete or went to shared memory: not run
    SPENT = "spent"  # its worker had run max_tasks_per_worker runs: not run, and the pool is due for renewal
    CANCELLED = "cancelled"


class RunIdentity(NamedTuple):
    """Who a run is: what its messages name it by, and what `procflow.runtime` reports inside it.
    One shape for every runner (a call, a worker's item, a Dask task's argument)."""

    run_id: int
    run_name: str
    task_name: str
    flow_run_name: str = ""  # (one string object for a flow's runs: pickled once)
    attempt: int = 1  # of this run, and of its flow run: `procflow.runtime`'s run_count
    flow_attempt: int = 1
    tags: tuple[str, ...] = ()
    transaction: Any = None  # its `task_transactions.RunTransaction`, when anything can see it
    flow_run_id: str | None = None  # its flow run's (one string for a flow's runs: pickled once a message)


class WorkItem(NamedTuple):
    who: RunIdentity
    fn_key: str
    timeout: float | None
    log_prints: bool
    after: int = 0  # fused: run only if this run of the same batch completed (0: no condition)
    persist: Persist | None = None  # store the result there (`results/store.py`), instead of shared memory
    takes: tuple[int, ...] = ()  # fused: runs ahead in this batch whose values it takes as made

    @property
    def run_id(self) -> int:  # the one field every outcome and ledger keys by
        return self.who.run_id


class Batch(NamedTuple):
    owner: str  # the parent's token: segment names begin `procflow-<owner>-` (`ownership.py`)
    board_dir: str
    threshold: int
    items: tuple[WorkItem, ...]
    arguments: tuple[bytes | SharedArguments, ...]  # one pickled (args, kwargs) per item
    lent: tuple[Segment, ...] = ()  # pooled segments to write results into
    expected: tuple[int, ...] = ()  # sizes of large results expected, with nothing to lend
    max_runs: int = 0  # max_tasks_per_worker: a worker runs at most this many runs in its life (0: no limit)


class Outcome(NamedTuple):
    run_id: int
    status: Status
    value: Any = None  # the result (in-process runners) or a ResultRef (processes)
    error: Any = None  # the exception, or its pickle when it crossed from a worker
    error_text: str = ""  # the worker's traceback text
    start: float = 0.0
    end: float = 0.0
    worker: int | str | None = None
    logs: tuple[tuple[int, str], ...] = ()
    transfer: float = 0.0  # moving its arguments in and its result out
    loading: float = 0.0  # loading its task's function: its first run in a worker imports the task's module
    transaction_values: Any = None  # what the task set in its transaction, pickled by name (a worker's)
