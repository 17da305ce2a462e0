"""Making a round of state changes visible at once: futures woken, observers told.

The engine collects what happened while it handled a batch of events (new states,
runs that finished, lines the runs printed) and publishes it in one go: one lock
round on the flow run's condition sets the states and wakes the futures; then each
finished run's printed lines and its end are told to the observer in the order the
runs finished; then a second round counts the runs down for their flow runs, so a
flow run's end is logged after its runs'; then future callbacks, outside the lock.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from .artifacts import ARTIFACT, receive
from .events import Observer
from .task_future import TaskFuture, Waiter
from .records import TaskRun
from .runlog import FLOW_LOGGER, TASK_LOGGER
from .states import State, is_terminal

Lines = tuple[tuple[int, str], ...]


class Publisher:
    def __init__(self, waiter: Waiter, observer: Observer) -> None:
        self.waiter = waiter
        self.observer = observer
        self._changes: list[tuple[TaskRun, State]] = []
        self._finished: list[tuple[TaskRun, Any]] = []  # (run, its tracker: `unfinished` counts down)
        self._lines: list[tuple[TaskRun, Lines]] = []

    def change(self, run: TaskRun, state: State) -> None:
        """A new state that does not end the run (a retry is coming)."""
        self._changes.append((run, state))

    def finish(self, run: TaskRun, state: State, tracker: Any) -> None:
        """The run's last state (final, or `NotReady`)."""
        self._changes.append((run, state))
        self._finished.append((run, tracker))

    def printed(self, run: TaskRun, lines: Lines, flow_run: Any) -> None:
        """A run's log lines; the artifacts that came back among them go to its flow run's record."""
        if any(level == ARTIFACT for level, _ in lines):
            for _, text in (line for line in lines if line[0] == ARTIFACT):
                receive(flow_run, text)
            lines = tuple(line for line in lines if line[0] != ARTIFACT)
        self._lines.append((run, lines))

    def publish(self) -> None:
        changes, finished, lines = self._changes, self._finished, self._lines
        if not changes:
            return
        self._changes, self._finished, self._lines = [], [], []
        waiter = self.waiter
        due: list[tuple[Callable[[TaskFuture[Any]], None], TaskFuture[Any]]] = []
        with waiter.condition:
            for run, state in changes:
                run.state = state
                if waiter.callbacks and is_terminal(state):
                    due.extend(waiter.callbacks.pop(run.id, ()))
            if finished:
                waiter.condition.notify_all()  # futures of these runs are done
        self._tell(finished, lines)
        if finished:  # only now may a flow run end: its "Finished" line comes after its runs' lines
            ends = Counter(tracker for _, tracker in finished)
            with waiter.condition:
                for tracker, count in ends.items():
                    tracker.unfinished -= count
                waiter.condition.notify_all()
        for fn, future in due:
            try:
                fn(future)
            except Exception:  # noqa: BLE001 - a user's callback must not stop the engine
                FLOW_LOGGER.exception("error in a future's done callback")

    def _tell(self, finished: list[tuple[TaskRun, Any]], printed: list[tuple[TaskRun, Lines]]) -> None:
        """Each run's printed lines, then its end, in the order runs finished (fused runs too)."""
        by_run: dict[int, list[tuple[int, str]]] = {}
        for run, lines in printed:
            by_run.setdefault(run.id, []).extend(lines)
        if not by_run:  # nothing printed: one call (a cancelled million-run map is told at once)
            self.observer.runs_finished([run for run, _ in finished])
        for run, _ in finished if by_run else ():
            _log_lines(run, by_run.pop(run.id, ()))
            self.observer.runs_finished([run])
        for run, _ in printed:  # runs going round again (retries): their lines still count
            _log_lines(run, by_run.pop(run.id, ()))


def _log_lines(run: TaskRun, lines: Any) -> None:
    for level, text in lines:
        TASK_LOGGER.log(level, f"Task run '{run.name}' - {text}")
