"""What the engine keeps per flow run (`Tracker`) and per run still to finish (`Entry`)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .caching import Memory, Plan
from .task_future import TaskFuture
from .lifetimes import HeldResults
from .spill import Spiller
from .states import State
from .records import FlowRun, TaskRun
from .shapes import Args, Kwargs
from .skeleton import Input, fill


@dataclass(slots=True, eq=False)
class Tracker:
    """The engine's bookkeeping for one flow run."""

    flow_run: FlowRun
    log_prints: bool
    results: HeldResults
    unfinished: int = 0
    cache: Memory = field(default_factory=dict)  # this flow run's completed runs that persist, by key
    persist_default: bool | None = None  # the flow's persist_result, for its tasks (`caching.plan`)
    storage: Path | None = None  # where its results persist, read when it started
    subflows: dict[tuple[str, int], State] = field(default_factory=dict)  # completed, persisting: for retries
    subflow_counts: dict[str, int] = field(default_factory=dict)  # subflow calls of the current attempt
    subflow_attempt: int = 0
    spiller: Spiller | None = None  # made when its first result lands in shared memory (`spill.py`)


NO_UPSTREAM: tuple[tuple[TaskFuture[Any], bool], ...] = ()  # shared: no empty list per run for the collector


@dataclass(slots=True, eq=False)
class Entry:
    """A run the engine still has to finish: what to call, and what it waits for."""

    run: TaskRun
    task: Any  # tasks.Task (imported above us)
    args: Args
    kwargs: Kwargs
    upstream: Sequence[tuple[TaskFuture[Any], bool]]  # (future, its failure is allowed): the slots', then wait_for's
    slots: int  # how many of `upstream` fill the argument skeleton's slots (`skeleton.py`)
    tracker: Tracker
    future: weakref.ref[TaskFuture[Any]] | None = None
    crashes: int = 0
    cache_plan: Plan | None = None
    name_pending: bool = False  # its task_run_name names futures: rendered when dispatched
    hooked: bool = False  # ended; its state hooks run (or ran) before its end is published
    transaction: Any = None  # its `task_transactions.RunTransaction`, when anything can see it

    def inputs(self) -> tuple[Input, ...]:
        """What fills the slots: each data upstream's run id and state (final by dispatch,
        except a fused upstream's in the same message)."""
        return tuple(Input(future.task_run.id, future.task_run.state, allowed)
                     for future, allowed in self.upstream[:self.slots])

    def arguments(self) -> tuple[Args, Kwargs]:
        """The call's arguments with its upstreams' results in, for the parent's own use (a run
        name that names them, a cache key)."""
        if not self.slots:
            return self.args, self.kwargs
        values = [slot.value() for slot in self.inputs()]
        return fill(self.args, values), fill(self.kwargs, values)
