"""`FlowRun` and `TaskRun`: what a run was, for users, the console, graphs and benchmarks.

A `TaskRun` is one small slotted record per run (100 000 runs must stay cheap). Times
are `time.time()` seconds, comparable across worker processes on one machine.
"""

from __future__ import annotations

import dataclasses
import types
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from .run_summary import summarise
from .trace import chrome_trace
from .states import Pending, State

if TYPE_CHECKING:
    from .graph import FlowRunGraph

EdgeKind = Literal["data", "wait_for"]


def _construct(cls: type, required: tuple[str, ...], fields: dict[str, Any]) -> Any:
    """Prefect's `Model.model_construct(**some_fields)`, which users' tests use to build a run
    context: a record with the fields given and the others as made; a field the record does not
    have (`job_variables`, `parent_task_run_id`, ...) makes it a plain namespace with them all."""
    known = {item.name for item in dataclasses.fields(cls)}
    record = cls(**{**{name: None for name in required}, **{k: v for k, v in fields.items() if k in known}})
    extras = {k: v for k, v in fields.items() if k not in known}
    if not extras:
        return record
    return types.SimpleNamespace(**{name: getattr(record, name) for name in known}, **extras)


NO_TAGS: frozenset[str] = frozenset()  # shared by the runs without tags: no empty frozenset per run
PENDING = Pending()


@dataclass(slots=True, eq=False)
class TaskRun:
    id: int
    name: str
    task_name: str
    flow_run_name: str
    state: State = PENDING  # one frozen state for every run not started: no object per run
    upstream: Sequence[tuple[int, EdgeKind]] = ()
    worker: int | str | None = None
    attempts: int = 0
    created_time: float = 0.0
    ready_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    transfer_seconds: float = 0.0  # moving its arguments in and its result out (process runner)
    loading_seconds: float = 0.0  # loading its task's function in the worker (a first run imports the module)
    map_group: int | None = None
    tags: frozenset[str] = NO_TAGS  # its task's, and those of `with procflow.tags(...)` around it
    flow_run_id: str | None = None  # Prefect's field: the id of its flow run (one shared string)
    cached_seconds: float = 0.0  # served from the cache: the run time of the run that made the entry
    result_bytes: int = 0  # its result as stored (pickle and out-of-band buffers), when known

    @classmethod
    def model_construct(cls, **fields: Any) -> Any:
        return _construct(cls, ("id", "name", "task_name", "flow_run_name"), fields)

    @property
    def run_count(self) -> int:
        """Prefect's name for `attempts`."""
        return self.attempts

    @property
    def outside_run_seconds(self) -> float:
        """In its worker but outside its function: loading the task's code and moving data
        (drawn before the run; queued is what is left of the time from ready to start)."""
        return self.transfer_seconds + self.loading_seconds

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent waiting for upstreams, queued while ready, loading the task's code in
        the worker, moving data, running."""
        ready = self.ready_time if self.ready_time is not None else self.created_time
        start = self.start_time if self.start_time is not None else ready
        end = self.end_time if self.end_time is not None else start
        return {
            "waiting": max(0.0, ready - self.created_time),
            "queued": max(0.0, start - ready - self.outside_run_seconds),
            "loading": self.loading_seconds,
            "transfer": self.transfer_seconds,
            "running": max(0.0, end - start),
        }

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id}, name={self.name!r}, state={self.state!r})"


@dataclass(slots=True, eq=False)
class FlowRun:
    name: str
    flow_name: str
    state: State = PENDING  # one frozen state for every run not started: no object per run
    task_runs: list[TaskRun] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    start_time: float = 0.0
    end_time: float | None = None
    parent: FlowRun | None = None
    run_count: int = 1  # its attempts so far: `flow(retries=...)` runs the function again
    id: str = field(default_factory=lambda: str(uuid.uuid4()))  # Prefect's flow run id: a UUID
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # `procflow.artifacts`, in order made
    workers: int | None = None  # the runner's pool size, when it has one
    held_bytes_peak: int = 0  # the most result bytes it held at once (shared memory, mostly)
    busy_workers: Callable[[], int] | None = field(default=None, repr=False)  # the runner's count, while it runs

    @classmethod
    def model_construct(cls, **fields: Any) -> Any:
        return _construct(cls, ("name", "flow_name"), fields)

    @property
    def graph(self) -> FlowRunGraph:
        from .graph import FlowRunGraph  # the drawing modules load when a run is drawn, not with procflow

        return FlowRunGraph(self.task_runs)

    def timeline_html(self, path: str) -> str:
        """Write a self-contained HTML timeline (a row per worker, a bar per run)."""
        from .graph import write_timeline_html

        return write_timeline_html(self, path)

    def summary(self) -> list[dict[str, Any]]:
        """Per task name: counts, run time total/p50/p95, and the seconds spent waiting for
        upstream runs, queued for a worker and moving data (`--stats`; `run_summary`)."""
        return [task.row() for task in summarise(self).tasks]

    def report_html(self, path: str) -> str:
        """One self-contained page: the summary, a timeline, the dependency graph, artifacts."""
        from .report import write_report

        return write_report(self, path)

    def to_chrome_trace(self) -> dict[str, Any]:
        """The runs in Chrome's Trace Event Format (Perfetto, chrome://tracing): a track per
        worker, a slice per run, flow arrows for dependencies."""
        return chrome_trace(self)

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, state={self.state!r}, task_runs={len(self.task_runs)})"
