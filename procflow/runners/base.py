"""The `Runner` protocol: runners only execute ready runs; the engine decides what is ready.

A runner gets `Call`s (a run with its function, its argument skeleton and the inputs
that fill its slots: it never sees a future) and reports `Outcome`s through the `sink`
the engine gave it, from any thread.

A runner instance is configuration, shared as users share it (one `@flow(task_runner=...)`
called from many threads). `start()` returns the flow run's own `Session`, which holds that
run's state; the engine talks to the session only (issues 15, 17). The process and Dask
runners' sessions are classes of their own (`ProcessSession`, `DaskSession`,
`ThreadSession`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, TypeVar

from .. import options
from ..messages import Outcome, Persist, RunIdentity
from ..states import LazyResult
from ..shapes import Args, Kwargs
from ..skeleton import Input

Sink = Callable[[list[Outcome]], None]
Used = TypeVar("Used", bound="DirectUse")


def worker_count(requested: int | None, default: int) -> int:
    """`max_workers` as given (at least 1), or the runner's default when None."""
    if requested is None:
        return default
    return options.whole("", "max_workers", requested, minimum=1)


@dataclass(slots=True)
class Call:
    who: RunIdentity
    fn: Callable[..., Any]
    args: Args
    kwargs: Kwargs
    inputs: tuple[Input, ...]  # what fills the arguments' slots, in order (`skeleton.py`)
    timeout: float | None
    log_prints: bool
    after: int = 0  # fused behind this run of the same batch (runners with `fuses`)
    map_group: int | None = None  # children of one `.map()` share what the flow passed them
    persist: Persist | None = None  # store the result there too (`results/store.py`)

    @property
    def run_id(self) -> int:  # the one field the engine and the runners key by
        return self.who.run_id


class Session(Protocol):
    """One flow run's use of a runner: what the engine talks to (`Runner.start()` makes it)."""

    interrupt_grace: float  # seconds between a run's deadline and `interrupt()`
    fuses: bool  # runs a dependent right behind its upstream in one message (see Call.after)

    def capacity(self) -> int:
        """How many more runs it takes now (a query: it changes nothing)."""

    def submit(self, calls: list[Call]) -> None: ...

    def interrupt(self, run_id: int, timeout: float) -> float | None:
        """A run is past its deadline: stop it; or say in how many seconds to ask again."""

    def cancel_running(self) -> None:
        """Ctrl-C: stop every running run now (their outcomes say CANCELLED)."""

    def release(self, result: LazyResult) -> None:
        """Nobody needs this result any more (free its storage)."""

    def shutdown(self) -> None:
        """The flow run ended: what it holds goes (a shared pool's workers stay warm)."""


class Runner(Protocol):
    """A runner as users make and share it: configuration only."""

    name: str
    depth_first: bool  # False: ready runs go in submission order

    def start(self, sink: Sink) -> Session:
        """Begin a flow run: returns that run's own session, so that one runner instance can
        serve flow runs in several threads at once."""


class DirectRuns(Protocol):
    """The flow run a runner used directly puts its runs in (`context.RunnerRuns`)."""

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any) -> Any: ...

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Any) -> Any: ...

    def close(self, interrupted: bool) -> None: ...


class DirectUse:
    """Prefect's own use of a task runner outside a flow (its engine's and its tests'): `with runner:`
    opens a flow run of the runner's own for the block, `submit(task, parameters)` and
    `map(task, parameters)` put runs in it, and leaving the block waits for them to end.

    What that flow run is belongs to the composition root: `context.py` registers its
    `RunnerRuns` as `opener` (importing `procflow.task_runners`, the runners' public home, does).
    """

    opener: ClassVar[Callable[[Any], DirectRuns] | None] = None
    _in_use: DirectRuns | None = None

    def __enter__(self: Used) -> Used:
        if self._in_use is not None:
            raise RuntimeError("This task runner is already started")  # Prefect's words
        if DirectUse.opener is None:
            raise RuntimeError("import the task runner from procflow.task_runners to use it directly")
        self._in_use = DirectUse.opener(self)
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        runs, self._in_use = self._in_use, None
        if runs is not None:
            runs.close(interrupted=kind is not None)

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None,
               dependencies: Any = None) -> Any:
        """A run of `task` with these keyword arguments: its future (`dependencies` are Prefect's
        record of inputs for its server, which procflow reads from the arguments themselves)."""
        return self._started().submit(task, parameters, wait_for)

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Any = None) -> Any:
        """`task.map(**parameters)` in the runner's flow run: the futures of its runs."""
        return self._started().map(task, parameters, wait_for)

    def _started(self) -> DirectRuns:
        if self._in_use is None:
            raise RuntimeError("Task runner is not started")  # Prefect's words
        return self._in_use

    def duplicate(self: Used) -> Used:
        """Prefect's: a runner of the same kind with the same settings, not started (a runner
        holds no pool itself: each flow run starts its own session of it)."""
        made = copy.copy(self)
        made.__dict__.pop("_in_use", None)
        return made

    def _settings(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if not name.startswith("_")}

    def __eq__(self, other: object) -> bool:
        """Prefect's: runners of one kind with the same settings are equal."""
        return type(self) is type(other) and self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash((type(self), getattr(self, "max_workers", None)))
