"""Executing one task run's call, wherever it runs: `execute()`, and `aexecute()` in an event loop.

Both set the run current (`get_run_logger()`, `procflow.runtime`, `print()` capture) around
the call and turn what happened into `(status, value, error, start, end)`. `execute` runs an
`async def` task in an event loop of its own (a worker process, a runner thread, a sync
flow); `aexecute` awaits it in the running loop (a direct call awaited in an async flow),
with its `timeout_seconds` as an `asyncio` deadline.
"""

from __future__ import annotations

import inspect
import os
import time
import traceback
from typing import Any, Callable

from .current import TaskRunInfo, current_task_run, own_runs
from .messages import Status
from .runlog import Emit, RunLogger, capture_prints, current_logger, release_prints
from .states import ReturnedState, State, StateType
from .task_transactions import RunTransaction, settle_here
from .transaction_base import BaseTransaction
from .shapes import Args, Kwargs

Executed = tuple[Status, Any, BaseException | None, float, float]


class RunTimedOut(TimeoutError):
    """Raised inside a task whose run went past its `timeout_seconds`."""


TIMED_OUT = "Task run exceeded its timeout_seconds and was interrupted"


def execute(run: TaskRunInfo, log_prints: bool, emit: Emit, own_interrupts: bool = False) -> Executed:
    """Run one call here. `own_interrupts`: where Ctrl-C cannot reach (a worker process, a
    Dask worker), a KeyboardInterrupt is the task's own failure."""
    start = time.time()
    try:
        with run_current(run, log_prints, emit):
            value = _call(run.fn, run.args, run.kwargs)
        return _returned(value, start)
    except RunTimedOut as error:
        return Status.TIMED_OUT, None, error, start, time.time()
    except KeyboardInterrupt as raised:
        if not own_interrupts:  # Ctrl-C in the flow's thread, or a thread runner's cancel: not the task's failure
            raise
        return Status.FAILED, None, raised, start, time.time()
    except BaseException as error:  # noqa: BLE001 - also SystemExit, asyncio.CancelledError, a library's own
        return Status.FAILED, None, error, start, time.time()


async def aexecute(run: TaskRunInfo, log_prints: bool, emit: Emit, timeout: float | None) -> Executed:
    """Await one call in the running loop; past `timeout` seconds it is cancelled and times out.
    A cancellation from outside (Ctrl-C under `asyncio.run`, a cancelled caller) goes on."""
    import asyncio

    start = time.time()
    deadline = asyncio.timeout(timeout)
    try:
        with run_current(run, log_prints, emit):
            async with deadline:
                value = run.fn(*run.args, **run.kwargs)
                if inspect.isawaitable(value):
                    value = await value
        return _returned(value, start)
    except TimeoutError as error:
        if deadline.expired():
            return Status.TIMED_OUT, None, RunTimedOut(str(error) or "timed out"), start, time.time()
        return Status.FAILED, None, error, start, time.time()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return Status.FAILED, None, asyncio.CancelledError(), start, time.time()
    except KeyboardInterrupt:  # Ctrl-C in the flow's thread: not the task's failure (as `execute`)
        raise
    except BaseException as error:  # noqa: BLE001 - also SystemExit and a library's own, as `execute`
        return Status.FAILED, None, error, start, time.time()


class run_current:  # noqa: N801 - used as a context manager
    """The run is current: its logger, its `procflow.runtime` record and its print capture.

    A generator task's run enters it around each step (`task_generators.py`): with
    `steps=True` a transaction the run made for itself ends at `settle()`, not at each exit."""

    def __init__(self, run: TaskRunInfo, log_prints: bool, emit: Emit, steps: bool = False) -> None:
        self._run, self._emit, self._steps = run, emit, steps
        self._own: RunTransaction | None = None
        # False also opts out of a flow's capture around a direct call (Prefect's log_prints=False)
        self._prints = capture_prints(emit) if log_prints else release_prints()

    def __enter__(self) -> None:
        # The run's own transaction, made when the task asks for it (`opened`): the engine ends
        # the one it gave (in the flow's process); one made here, or a worker's copy, ends here.
        given = self._own = self._run.transaction
        self._tokens = (current_logger.set(RunLogger(self._emit, self._run.name or self._run.task_name)),
                        current_task_run.set(self._run),
                        BaseTransaction.__var__.set(given if given is not None else self))  # type: ignore[arg-type]
        self._prints.__enter__()

    def opened(self) -> BaseTransaction:
        """`get_transaction()` in a run given none: its own, made at the first ask."""
        if self._own is None:
            self._own = RunTransaction(None, ends_here=True)
        return self._own.opened()

    def __exit__(self, *exc: object) -> None:
        self._prints.__exit__(*exc)
        if not self._steps:
            self.settle(failed=exc[0] is not None)
        BaseTransaction.__var__.reset(self._tokens[2])
        current_task_run.reset(self._tokens[1])
        current_logger.reset(self._tokens[0])

    def settle(self, failed: bool) -> None:
        """End what the run opened for itself: the runs it submitted where no flow is open
        (`context.py`: waited for, or cancelled if it failed), and its own transaction (or a
        worker's copy), if it has one."""
        if own_runs and self._run.run_id in own_runs:
            own_runs.pop(self._run.run_id)(failed)
        if self._own is not None and self._own.ends_here:
            settle_here(self._own, failed=failed)


def _returned(value: Any, start: float) -> Executed:
    if isinstance(value, State):  # Prefect's custom states: the run ends in it
        if value.type is not StateType.COMPLETED:
            declared = ReturnedState(value.type.value, value.name or value.type.value.capitalize(), value.message,
                                     value.data)
            return Status.FAILED, None, declared, start, time.time()
        value = value.data
    return Status.COMPLETED, value, None, start, time.time()


def _call(fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
    value = fn(*args, **kwargs)
    if inspect.iscoroutine(value):  # an `async def` task: run in its own event loop, here
        import asyncio  # only then: a worker starts faster without it

        value = asyncio.run(value)
    elif inspect.isgenerator(value):  # as Prefect: a generator cannot travel, its values can
        value = list(value)
    elif inspect.isasyncgen(value):  # Prefect fails on it; its values are what the caller wants
        import asyncio

        value = asyncio.run(_collected(value))
    return value


async def _collected(values: Any) -> list[Any]:
    return [value async for value in values]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def task_traceback(error: BaseException) -> str:
    """The error's traceback from the task's own code down: procflow's frames above it
    (`execute`, `_call`, a runner's loop) say nothing to the user and are left out."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb or error.__traceback__))
