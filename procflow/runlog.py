"""Run-scoped logging: `get_run_logger()`, and `print()` turned into log records.

The current run is a context variable, set by whoever executes the run (a worker
process, a thread of the thread runner, or the flow itself). Each run has a `LogSink`:
in the parent it logs at once; in a worker process it collects lines that travel back
with the run's outcome and are logged by the parent.
"""

from __future__ import annotations

import builtins
import contextvars
import io
import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable

from .exceptions import MissingContextError

FLOW_LOGGER = logging.getLogger("procflow.flow_runs")
TASK_LOGGER = logging.getLogger("procflow.task_runs")


def log_retry(run_name: str, reason: str) -> None:
    """Prefect's line for an attempt that failed and will be run again (submitted or called)."""
    TASK_LOGGER.info(f"Task run '{run_name}' - Received non-final state 'AwaitingRetry' when proposing "
                     f"final state 'Failed' and will attempt to run again... ({reason})")

Emit = Callable[[int, str], None]


class RunLogger:
    """The logger `get_run_logger()` returns: records name the run they come from.

    It takes what a `logging.Logger` takes (`%`-style arguments, `exc_info=`,
    `stack_info=`, `extra=`), as Prefect's logger adapter does; a record becomes one line
    of text, with its traceback, because a worker's lines travel to the parent as text.
    """

    def __init__(self, emit: Emit, name: str) -> None:
        self._emit = emit
        self.name = name

    def log(self, level: int, msg: object, *args: object, exc_info: Any = None, stack_info: bool = False,
            stacklevel: int = 1, extra: Any = None) -> None:
        text = str(msg) % args if args else str(msg)
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                exc_info = sys.exc_info()
            if exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
        if stack_info:
            text += "\nStack (most recent call last):\n" + "".join(traceback.format_stack()[:-1]).rstrip()
        self._emit(level, text)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    warn = warning

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **kwargs)

    fatal = critical

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        threshold = logging.getLogger("procflow").level
        if threshold == logging.NOTSET:  # a worker process: the level the parent logs at
            named = logging.getLevelName(os.environ.get("PROCFLOW_LOGGING_LEVEL", "INFO").upper())
            threshold = named if isinstance(named, int) else logging.INFO
        return level >= threshold


current_logger: contextvars.ContextVar[RunLogger | None] = contextvars.ContextVar("procflow_run_logger", default=None)


def get_run_logger() -> RunLogger:
    """A logger bound to the current task or flow run."""
    logger = current_logger.get()
    if logger is None:
        raise MissingContextError(
            "There is no active flow or task run context: get_run_logger() names the run it "
            "logs for; call it inside a @flow or @task function"
        )
    return logger


def current_or(logger: Any) -> Any:
    """The logger of the run code is executing in (its lines name it), else `logger`."""
    return current_logger.get() or logger


def task_emitter(run_name: str) -> Emit:
    prefix = f"Task run '{run_name}' - "
    return lambda level, text: TASK_LOGGER.log(level, prefix + text)


def flow_emitter(run_name: str) -> Emit:
    prefix = f"Flow run '{run_name}' - "
    return lambda level, text: FLOW_LOGGER.log(level, prefix + text)


# The run whose `print()` calls become its log records here (None: print as usual). A
# context variable, so each thread and each asyncio task has its own.
_print_target: contextvars.ContextVar[Emit | None] = contextvars.ContextVar("procflow_print_target", default=None)
_print_lock = threading.Lock()
_captures = 0  # capture blocks open in this process: `builtins.print` is patched while any is
_unpatched_print = builtins.print


def print_as_log(*args: Any, **kwargs: Any) -> None:
    """`print` while a `log_prints` run is open: one INFO record per call of the run whose code
    calls it (Prefect's `print_as_log`); elsewhere, and for other files, the usual `print`."""
    emit = _print_target.get()
    if emit is None or kwargs.get("file") not in (None, sys.stdout, sys.stderr):
        _unpatched_print(*args, **kwargs)
        return
    buffer = io.StringIO()
    kwargs["file"] = buffer
    _unpatched_print(*args, **kwargs)
    emit(logging.INFO, buffer.getvalue().rstrip())


class release_prints:  # noqa: N801 - used as a context manager
    """Within the block, `print()` prints again, even inside a `capture_prints` block: a task
    or nested flow with `log_prints=False` opts out (Prefect)."""

    def __enter__(self) -> None:
        self._token = _print_target.set(None)

    def __exit__(self, *exc: object) -> None:
        _print_target.reset(self._token)


class capture_prints:  # noqa: N801 - used as a context manager
    """Within the block, `print()` in this thread or asyncio task becomes records of `emit`."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit

    def __enter__(self) -> None:
        global _captures, _unpatched_print
        with _print_lock:
            if _captures == 0 and builtins.print is not print_as_log:
                _unpatched_print = builtins.print
                builtins.print = print_as_log
            _captures += 1
        self._token = _print_target.set(self._emit)

    def __exit__(self, *exc: object) -> None:
        global _captures
        _print_target.reset(self._token)
        with _print_lock:
            _captures -= 1
            if _captures == 0 and builtins.print is print_as_log:
                builtins.print = _unpatched_print
