"""Console output: Prefect's log lines, a live progress view on a terminal, a closing summary.

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

import atexit
import logging
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .events import Observer
from .records import FlowRun, TaskRun
from .run_summary import GROUP_ABOVE
from .runlog import FLOW_LOGGER, TASK_LOGGER
from .states import State, StateType
from .exceptions import FailedRun, RemoteTraceback
from .execution import task_traceback

if TYPE_CHECKING:  # rich and the live view load when a terminal or the closing summary needs them
    from rich.console import Console, Group

    from .live_view import LiveView

MAP_LINES_ABOVE = GROUP_ABOVE
CANCELLED_LINES = 3
TRACEBACKS_IN_FULL = 5
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
            from rich.logging import RichHandler

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
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


@dataclass(slots=True)
class _MapGroup:
    task_name: str
    total: int
    flow_run_name: str
    states: Counter[Any] = field(default_factory=Counter)
    done: int = 0


class ConsoleObserver(Observer):
    """Turns run events into Prefect's log lines (and the terminal views)."""

    def __init__(self, live: bool) -> None:
        self._groups: dict[tuple[str, int | None], _MapGroup] = {}
        self._cancelled_said: Counter[Any] = Counter()  # flow run name -> cancelled runs logged
        # flow run name -> failures logged (with a traceback for the first few)
        self._tracebacks: Counter[Any] = Counter()
        self._live = live
        self._view: LiveView | None = None

    def flow_started(self, flow_run: FlowRun) -> None:
        if flow_run.parent is None:
            FLOW_LOGGER.info(f"Created flow run '{flow_run.name}' for flow '{flow_run.flow_name}'")
            FLOW_LOGGER.info(f"Flow run '{flow_run.name}' - Beginning flow run '{flow_run.name}' "
                             f"for flow '{flow_run.flow_name}'")
            if self._live:
                from .live_view import LiveView

                self._view = LiveView(flow_run, _rich_console())
        else:
            FLOW_LOGGER.info(f"Flow run '{flow_run.parent.name}' - Created subflow run '{flow_run.name}' "
                             f"for flow '{flow_run.flow_name}'")
            FLOW_LOGGER.info(f"Flow run '{flow_run.name}' - Beginning subflow run '{flow_run.name}' "
                             f"for flow '{flow_run.flow_name}'")

    def runs_created(self, flow_run: FlowRun, runs: list[TaskRun], mapped: bool) -> None:
        if self._view is not None:
            self._view.created(runs)
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
        if self._view is not None:
            self._view.finished(runs)
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

    def _log_end(self, run: TaskRun, state: State) -> None:
        level = logging.INFO if state.is_completed() else logging.ERROR
        if TASK_LOGGER.isEnabledFor(level):
            if state.is_failed():
                self._tracebacks[run.flow_run_name] += 1
                _log_failure(run, with_traceback=self._tracebacks[run.flow_run_name] <= TRACEBACKS_IN_FULL)
            TASK_LOGGER.log(level, f"Task run '{run.name}' - Finished in state {state!r}")

    def flow_finished(self, flow_run: FlowRun) -> None:
        self._tracebacks.pop(flow_run.name, None)
        unsaid = self._cancelled_said.pop(flow_run.name, 0) - CANCELLED_LINES
        if unsaid > 0:
            TASK_LOGGER.error(f"Flow run '{flow_run.name}' - {unsaid} more task run(s) finished in state "
                              "Cancelled (the first few are above)")
        if flow_run.parent is not None:
            return
        if self._view is not None:
            self._view.stop()
            self._view = None
        if self._live and _interactive():  # a session that goes on: after each flow run
            _rich_console().print(end_table(flow_run))
        else:
            _remember_for_exit(flow_run)


def _log_failure(run: TaskRun, with_traceback: bool = True) -> None:
    """Prefect's line for a run that failed with an exception: the exception and where it
    was raised, in the task's own process. Past the first `TRACEBACKS_IN_FULL` of a flow run,
    the line alone (100 failed runs printed 1 156 lines; the end summary counts them)."""
    error = run.state.data
    if not isinstance(error, BaseException) or isinstance(error, FailedRun):  # FailedRun: a declared failure
        return
    line = f"Task run '{run.name}' - Task run failed with exception: {error!r} - Retries are exhausted"
    if with_traceback:
        TASK_LOGGER.error(f"{line}\n{traceback_text(error)}".rstrip())
    else:
        TASK_LOGGER.error(f"{line} (traceback shown for the first {TRACEBACKS_IN_FULL} failures of the flow run)")


def traceback_text(error: BaseException) -> str:
    """The traceback of the worker (`decode_error` attached it) or thread the error was raised in."""
    if isinstance(error.__cause__, RemoteTraceback):
        return error.__cause__.text
    if error.__traceback__ is not None:
        return task_traceback(error)
    return ""


def end_table(flow_run: FlowRun) -> Group:
    """The end summary of one flow run (`live_view.end_summary`)."""
    from .live_view import end_summary

    return end_summary(flow_run)


SHOW_CLOSING_SUMMARY = True  # off: PROCFLOW_END_SUMMARY=0, or any pytest session (its flows are tests)
_ended: list[FlowRun] = []  # outermost flow runs of this process, for the closing summary
_ended_lock = threading.Lock()
_summary_registered = False


def _interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or "ipykernel" in sys.modules


def _summary_wanted() -> bool:
    return SHOW_CLOSING_SUMMARY and os.environ.get("PROCFLOW_END_SUMMARY", "1") != "0" \
        and "_pytest" not in sys.modules  # a test session's flow runs: noise after its report


def _remember_for_exit(flow_run: FlowRun) -> None:
    global _summary_registered
    if _summary_wanted():
        # Loaded now, not by the exit handler: code run at exit (a dataclass or namedtuple made
        # by an import) makes CPython forget an uncaught Ctrl-C, and the script exit 1, not 130.
        from rich.text import Text  # noqa: F401
        from . import live_view  # noqa: F401
    with _ended_lock:
        _ended.append(flow_run)
        if not _summary_registered:
            _summary_registered = True
            atexit.register(closing_summary)


def closing_summary() -> None:
    """Once, as the process ends: a line per outermost flow run, then the last one in full
    (a script that calls its flow four times prints one summary, not four). On a terminal
    with colour; in a pipe or a file as plain lines that do not wrap."""
    with _ended_lock:
        ended = list(_ended)
        _ended.clear()
    if not ended or not _summary_wanted():
        return
    from rich.console import Console
    from rich.text import Text

    console = _rich_console() if stderr_is_terminal() else Console(file=sys.stderr, width=200, no_color=True,
                                                                    highlight=False)
    try:
        if len(ended) > 1:
            console.print(Text(f"{len(ended)} flow runs:", style="bold"))
            for flow_run in ended[:-1]:
                console.print(Text(f"  '{flow_run.name}' {flow_run.state!r} · {len(flow_run.task_runs)} task runs",
                                   no_wrap=True, overflow="ellipsis"))
        console.print(end_table(ended[-1]))
    except (OSError, ValueError):  # stderr closed at exit
        pass


def default_observer() -> Observer:
    configure_logging()
    return ConsoleObserver(live=stderr_is_terminal())
