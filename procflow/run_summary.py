"""What a flow run did, in numbers: the end table, the report page and `--stats` read this.

Each run's time splits into five parts (`TaskRun.timings`): *waiting* for its upstream
runs, *queued* while ready (no free worker), *loading* its task's code in the worker (a
task's first run in a worker imports the task's module: pandas, say, ~0.3 s), *moving
data* (arguments and result between processes) and *running* its function. Utilisation
is the running time over the wall time times the pool's workers.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .states import StateType

PARTS = ("waiting", "queued", "loading", "transfer", "running")
PART_TITLES = {"waiting": "waiting for upstream", "queued": "queued for a worker",
               "loading": "loading task code", "transfer": "moving data",
               "running": "running"}
FAILURES_IN_FULL = 5
GROUP_ABOVE = 10  # a map of more runs is one group: one node in the graph, two lines in the log


@dataclass
class TaskSummary:
    task: str
    count: int = 0
    completed: int = 0
    failed: int = 0  # did not complete: failed, crashed, cancelled, not ready
    retried: int = 0  # runs that took more than one attempt
    cached: int = 0
    run_seconds: list[float] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    result_bytes: int = 0
    cache_saved_seconds: float = 0.0

    @property
    def run_total(self) -> float:
        return sum(self.run_seconds)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.run_seconds)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    def share(self, part: str) -> float:
        total = sum(self.parts.values())
        return self.parts[part] / total if total > 0 else 0.0

    def row(self) -> dict[str, Any]:
        """One line of `--stats`: each column named for what it measures."""
        return {"task": self.task, "count": self.count, "completed": self.completed, "not_completed": self.failed,
                "retried": self.retried, "cached": self.cached, "run_total_s": self.run_total,
                "run_p50_s": self.percentile(0.5), "run_p95_s": self.percentile(0.95),
                "waiting_for_upstream_total_s": self.parts["waiting"],
                "queued_for_worker_total_s": self.parts["queued"],
                "loading_task_code_total_s": self.parts["loading"], "moving_data_total_s": self.parts["transfer"],
                "result_bytes_total": self.result_bytes,
                "cache_saved_s": self.cache_saved_seconds}


@dataclass
class Failure:
    run: str
    state: str
    kind: str  # the exception's type name, or the state's name
    first_line: str


@dataclass
class RunSummary:
    flow_run: str
    state: str
    wall_seconds: float
    workers: int
    busy_seconds: float
    held_bytes_peak: int
    cached: int
    cache_saved_seconds: float
    tasks: list[TaskSummary]
    failures: list[Failure]  # the first `FAILURES_IN_FULL`
    failure_total: int = 0
    more_failures: Counter[Any] = field(default_factory=Counter)  # the others, by kind

    @property
    def utilisation(self) -> float:
        capacity = self.wall_seconds * self.workers
        return min(1.0, self.busy_seconds / capacity) if capacity > 0 else 0.0

    def failure_counts(self) -> list[tuple[str, int]]:
        """The failures not shown in full, per kind (`ZeroDivisionError`, `Crashed`, ...)."""
        return self.more_failures.most_common()


def summarise(flow_run: Any) -> RunSummary:
    """One pass over the runs, a few operations each: a million cancelled runs are summed
    within the exit's 5 s (`TaskRun.timings` would build a dict per run)."""
    by_task: dict[str, TaskSummary] = {}
    failures: list[Failure] = []
    more: Counter[Any] = Counter()
    failed_total = 0
    busy = 0.0
    workers_seen = set()
    cached = 0
    cache_saved = 0.0
    for run in flow_run.task_runs:
        summary = by_task.get(run.task_name)
        if summary is None:
            summary = by_task[run.task_name] = TaskSummary(run.task_name)
        created = run.created_time
        ready = run.ready_time if run.ready_time is not None else created
        start = run.start_time if run.start_time is not None else ready
        end = run.end_time if run.end_time is not None else start
        running = end - start if end > start else 0.0
        queued = start - ready - run.outside_run_seconds
        parts = summary.parts
        parts["waiting"] += ready - created if ready > created else 0.0
        parts["queued"] += queued if queued > 0 else 0.0
        parts["loading"] += run.loading_seconds
        parts["transfer"] += run.transfer_seconds
        parts["running"] += running
        summary.count += 1
        summary.run_seconds.append(running)
        summary.result_bytes += run.result_bytes
        if run.attempts > 1:
            summary.retried += 1
        state = run.state
        if state.name == "Cached":
            summary.cached += 1
            summary.cache_saved_seconds += run.cached_seconds
            cached += 1
            cache_saved += run.cached_seconds
        if state.type is StateType.COMPLETED:
            summary.completed += 1
        else:
            summary.failed += 1
            failed_total += 1
            if len(failures) < FAILURES_IN_FULL:
                failures.append(_failure(run))
            else:
                more[type(state.data).__name__ if isinstance(state.data, BaseException) else state.name] += 1
        if run.start_time is not None:
            busy += running
            workers_seen.add(run.worker)
    end_time = flow_run.end_time or time.time()
    return RunSummary(flow_run.name, repr(flow_run.state), max(0.0, end_time - flow_run.start_time),
                      max(flow_run.workers or len(workers_seen), 1), busy, flow_run.held_bytes_peak, cached,
                      cache_saved, list(by_task.values()), failures, failed_total, more)


def _failure(run: Any) -> Failure:
    state = run.state
    error = state.data
    if isinstance(error, BaseException):
        kind = type(error).__name__
        text = f"{kind}: {error}"
    else:
        kind = state.name
        text = state.message or state.name
    lines = text.strip().splitlines() or [state.name]
    return Failure(run.name, state.name, kind, lines[0])


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


def human_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"
