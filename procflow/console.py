"""Console output: Prefect's log lines, a live progress view and an end table on a terminal.

An observer of the engine (which never imports this). Records go through `logging`
(`procflow.flow_runs`, `procflow.task_runs`) to stderr: plain one-line records when
stderr is not a terminal (never wrapped, so logs grep), rich on a terminal.
`PROCFLOW_LOGGING_LEVEL` sets the level (else a level the user set on the logger stays).
A `.map()` of more than `MAP_LINES_ABOVE` children gets one Created/Submitted line and
one summary line; failures always get their own line. Cancellations (Ctrl-C on a large
map or loop) are not failures of their own: the first `CANCELLED_LINES` of a flow run get a
line, the rest one line with their count, so a million pending runs still exit at once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from .events import Observer
from .graph import GROUP_ABOVE
from .records import FlowRun, TaskRun
from .runlog import FLOW_LOGGER, TASK_LOGGER
from .shm_pool import shm_used_bytes
from .states import FailedRun, RemoteTraceback, State, StateType
from .execution import task_traceback

MAP_LINES_ABOVE = GROUP_ABOVE
CANCELLED_LINES = 3
PLAIN_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(message)s"

_configured = False
_configure_lock = threading.Lock()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def configure_logging() -> None:
    """Give procflow's records a console handler, once, unless the user configured logging.

    As in Prefect, the handler sits on the root logger and procflow's records propagate to
    it, so `logging` configuration and pytest's `caplog` see them; handlers the user gave
    the `procflow` logger or the root logger are kept and no second one is added.
    """
    global _configured
    with _configure_lock:
        if _configured:
            return
        _configured = True
        ours = logging.getLogger("procflow")
        level = os.environ.get("PROCFLOW_LOGGING_LEVEL")
        if level:
            ours.setLevel(level.upper())
        elif ours.level == logging.NOTSET:  # a level the user set stays
            ours.setLevel(logging.INFO)
        root = logging.getLogger()
        if ours.handlers or any(not _is_pytest_handler(h) for h in root.handlers):
            return
        if stderr_is_terminal():
            handler: logging.Handler = RichHandler(console=_rich_console(), show_path=False, markup=False,
                                                   log_time_format="%H:%M:%S")
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(OneLineFormatter(PLAIN_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)


def _is_pytest_handler(handler: logging.Handler) -> bool:
    """pytest's capture handlers come and go with each test: they are not the user's setup."""
    return type(handler).__module__.startswith("_pytest")


class OneLineFormatter(logging.Formatter):
    """One record, one line, whatever it holds: newlines (tracebacks too) become `\\n`."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


_console: Console | None = None


def _rich_console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


@dataclass(slots=True)
class _MapGroup:
    task_name: str
    total: int
    flow_run_name: str
    states: Counter = field(default_factory=Counter)
    done: int = 0


class ConsoleObserver(Observer):
    """Turns run events into Prefect's log lines (and the terminal views)."""

    def __init__(self, live: bool) -> None:
        self._groups: dict[tuple[str, int | None], _MapGroup] = {}
        self._cancelled_said: Counter = Counter()  # flow run name -> cancelled runs logged
        self._live = live
        self._view: _LiveView | None = None

    def flow_started(self, flow_run: FlowRun) -> None:
        if flow_run.parent is None:
            FLOW_LOGGER.info(f"Created flow run '{flow_run.name}' for flow '{flow_run.flow_name}'")
            if self._live:
                self._view = _LiveView(flow_run)
        else:
            FLOW_LOGGER.info(f"Flow run '{flow_run.parent.name}' - Created subflow run '{flow_run.name}' "
                             f"for flow '{flow_run.flow_name}'")

    def runs_created(self, flow_run: FlowRun, runs: list[TaskRun], mapped: bool) -> None:
        if not FLOW_LOGGER.isEnabledFor(logging.INFO):
            return
        prefix = f"Flow run '{flow_run.name}' - "
        if mapped and len(runs) > MAP_LINES_ABOVE:
            first, last = runs[0], runs[-1]
            self._groups[(flow_run.name, first.map_group)] = _MapGroup(first.task_name, len(runs), flow_run.name)
            FLOW_LOGGER.info(f"{prefix}Created {len(runs)} task runs '{first.name}' … '{last.name}' "
                             f"for task '{first.task_name}' (map)")
            FLOW_LOGGER.info(f"{prefix}Submitted {len(runs)} task runs '{first.name}' … '{last.name}' for execution.")
            return
        for run in runs:
            FLOW_LOGGER.info(f"{prefix}Created task run '{run.name}' for task '{run.task_name}'")
            FLOW_LOGGER.info(f"{prefix}Submitted task run '{run.name}' for execution.")

    def runs_finished(self, runs: list[TaskRun]) -> None:
        groups, said = self._groups, self._cancelled_said
        for run in runs:
            state = run.state
            group = groups.get((run.flow_run_name, run.map_group)) if run.map_group is not None else None
            if state.type is StateType.CANCELLED:
                said[run.flow_run_name] += 1  # the first few get a line; the rest one line at the end
                if said[run.flow_run_name] <= CANCELLED_LINES:
                    self._log_end(run, state)
            elif group is None or state.type is not StateType.COMPLETED:
                self._log_end(run, state)
            if group is not None:
                group.states[state.name] += 1
                group.done += 1
                if group.done == group.total:
                    del groups[(run.flow_run_name, run.map_group)]
                    counts = ", ".join(f"{name} {count}" for name, count in group.states.most_common())
                    FLOW_LOGGER.info(f"Flow run '{group.flow_run_name}' - All {group.total} task runs of "
                                     f"map '{group.task_name}' finished: {counts}")

    @staticmethod
    def _log_end(run: TaskRun, state: State) -> None:
        level = logging.INFO if state.is_completed() else logging.ERROR
        if TASK_LOGGER.isEnabledFor(level):
            if state.is_failed():
                _log_failure(run)
            TASK_LOGGER.log(level, f"Task run '{run.name}' - Finished in state {state!r}")

    def flow_finished(self, flow_run: FlowRun) -> None:
        unsaid = self._cancelled_said.pop(flow_run.name, 0) - CANCELLED_LINES
        if unsaid > 0:
            TASK_LOGGER.error(f"Flow run '{flow_run.name}' - {unsaid} more task run(s) finished in state "
                              "Cancelled (the first few are above)")
        if flow_run.parent is None and self._view is not None:
            self._view.stop()
            self._view = None
            _rich_console().print(end_table(flow_run))


def _log_failure(run: TaskRun) -> None:
    """Prefect's line for a run that failed with an exception: the exception and where it
    was raised, in the task's own process."""
    error = run.state.data
    if not isinstance(error, BaseException) or isinstance(error, FailedRun):  # FailedRun: a declared failure
        return
    TASK_LOGGER.error(f"Task run '{run.name}' - Task run failed with exception: {error!r} - Retries are exhausted"
                      f"\n{traceback_text(error)}".rstrip())


def traceback_text(error: BaseException) -> str:
    """The traceback of the worker (`decode_error` attached it) or thread the error was raised in."""
    if isinstance(error.__cause__, RemoteTraceback):
        return error.__cause__.text
    if error.__traceback__ is not None:
        return task_traceback(error)
    return ""


class _LiveView:
    """Finished / total per task name, busy workers, shared memory in use."""

    def __init__(self, flow_run: FlowRun) -> None:
        self.flow_run = flow_run
        self._live = Live(get_renderable=self._render, console=_rich_console(), refresh_per_second=4,
                          transient=True)
        self._live.start()

    def _render(self) -> Table:
        runs = list(self.flow_run.task_runs)
        totals: Counter = Counter(run.task_name for run in runs)
        done: Counter = Counter(run.task_name for run in runs if run.state.is_final() or run.state.name == "NotReady")
        running = sum(1 for run in runs if run.state.is_running())
        table = Table(title=f"Flow run '{self.flow_run.name}'", expand=False)
        table.add_column("task")
        table.add_column("finished / total", justify="right")
        for name, total in totals.items():
            table.add_row(name, f"{done[name]} / {total}")
        table.caption = f"workers busy: {running} · shared memory in use: {shm_used_bytes() / 2**20:.1f} MiB"
        return table

    def stop(self) -> None:
        self._live.stop()


def end_table(flow_run: FlowRun) -> Group:
    """Runs per state, the slowest runs, and the failed ones with their errors."""
    runs = flow_run.task_runs
    cached = [run for run in runs if run.state.name == "Cached"]
    per_state = Table(title=f"Flow run '{flow_run.name}': {flow_run.state!r}")
    per_state.add_column("state")
    per_state.add_column("runs", justify="right")
    for name, count in Counter(run.state.name for run in runs).most_common():
        per_state.add_row(name, str(count))
    slowest = Table(title="Slowest runs")
    slowest.add_column("run")
    slowest.add_column("seconds", justify="right")
    for run in sorted(runs, key=lambda r: r.timings["running"], reverse=True)[:5]:
        slowest.add_row(run.name, f"{run.timings['running']:.3f}")
    parts: list[Any] = [per_state, slowest]
    if cached:
        parts.append(Text(f"{len(cached)} runs served from the cache, saving "
                          f"{sum(run.cached_seconds for run in cached):.1f} s of run time"))
    failed = [run for run in runs if not run.state.is_completed()]
    if failed:
        failures = Table(title="Did not complete")
        failures.add_column("run")
        failures.add_column("state")
        for run in failed[:20]:
            failures.add_row(run.name, repr(run.state))
        parts.append(failures)
    return Group(*parts)


def default_observer() -> Observer:
    configure_logging()
    return ConsoleObserver(live=stderr_is_terminal())
