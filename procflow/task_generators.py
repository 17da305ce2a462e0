"""A direct call of a generator task (`for row in rows(path): ...`): one run, alive while it yields.

As in Prefect 3.8 (`run_generator_task_sync` / `_async`):
- the run begins at the caller's first `next()` (a generator not iterated never runs);
- each value the function yields goes to the caller as it comes (`send()` and `throw()`
  reach the function too), with the run current around each step;
- the run ends when the function returns: Completed, with the returned value as the
  `StopIteration` value the caller sees; or when it fails: a retry calls the function
  again and its values come again, the last failure is raised in the caller;
- `timeout_seconds` counts from the attempt's first step, the caller's time between
  values included;
- a caller that stops early (`break`, `close()`) closes the function's generator, and the
  run ends Completed with None;
- `return_state=True` is refused on the first `next()`: a generator's values are its result.

Not Prefect's: the run is never read from the cache nor stored (Prefect skips the read and
leaves its values unstored; what a generator yields is its result). Submitted (`.submit()`,
`.map()`), a generator task's values are collected into a list where it runs
(`execution._call`), as Prefect's are.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, AsyncGenerator, Generator

from . import direct
from .attempts import Finish
from .current import TaskRunInfo
from .execution import TIMED_OUT, Executed, RunTimedOut, run_current
from .interrupts import deadline
from .messages import Status
from .resolve import wait_all
from .runlog import Emit
from .shapes import Args, Kwargs
from .states import State
from .task_transactions import made_here

REFUSED = "The return_type for a generator task must be 'result'"  # Prefect's words
_YIELDED, _ENDED = object(), object()


def call(task: direct.DirectTask, args: Args, kwargs: Kwargs, wait_for: Any,
         return_state: bool) -> Generator[Any, Any, Any]:
    if return_state:
        raise ValueError(REFUSED)
    context = direct.context_of(task)
    if context is None:  # inside a task in a worker: the function's own generator
        return (yield from task.fn(*args, **kwargs))
    transaction = made_here(task)
    run, upstream, needs, provisional = direct.new_run(task, context, args, kwargs, wait_for)
    wait_all(upstream)
    blocked, args, kwargs = direct.inputs(task, run, upstream, args, kwargs, needs, provisional)
    state = blocked
    while state is None:
        info, log_prints, emit = direct.attempt(task, context, run, args, kwargs, transaction)
        steps = _Steps(info, log_prints, emit, task.timeout_seconds)
        sent: Any = None
        while steps.advance(sent) is _YIELDED:
            try:
                sent = yield steps.value
            except GeneratorExit:  # the caller stopped early: the run ends Completed (None)
                steps.close()
                direct.after(task, context, run, _ended(task, run, steps), False, transaction, None)
                raise
            except BaseException as thrown:  # noqa: BLE001 - `throw()` reaches the function
                steps.thrown = thrown
        end = direct.attempt_end(task, run, steps.outcome)
        if isinstance(end, Finish):
            state = end.state
        else:
            time.sleep(end.delay)
    return direct.after(task, context, run, state, False, transaction, None)


async def acall(task: direct.DirectTask, args: Args, kwargs: Kwargs, wait_for: Any,
                return_state: bool) -> AsyncGenerator[Any, Any]:
    """An `async def` generator task: the same run, its steps awaited in the caller's loop."""
    import asyncio  # an event loop runs this: loaded already

    if return_state:
        raise ValueError(REFUSED)
    context = direct.context_of(task)
    if context is None:
        async for value in task.fn(*args, **kwargs):
            yield value
        return
    transaction = made_here(task)
    run, upstream, needs, provisional = direct.new_run(task, context, args, kwargs, wait_for)
    if upstream:
        await asyncio.to_thread(wait_all, upstream)
    blocked, args, kwargs = direct.inputs(task, run, upstream, args, kwargs, needs, provisional)
    state = blocked
    while state is None:
        info, log_prints, emit = direct.attempt(task, context, run, args, kwargs, transaction)
        steps = _AsyncSteps(info, log_prints, emit, task.timeout_seconds)
        sent: Any = None
        while (await steps.advance(sent)) is _YIELDED:
            try:
                sent = yield steps.value
            except GeneratorExit:
                await steps.close()
                direct.after(task, context, run, _ended(task, run, steps), False, transaction, None)
                raise
            except BaseException as thrown:  # noqa: BLE001 - `athrow()` reaches the function
                steps.thrown = thrown
        end = direct.attempt_end(task, run, steps.outcome)
        if isinstance(end, Finish):
            state = end.state
        else:
            await asyncio.sleep(end.delay)
    direct.after(task, context, run, state, False, transaction, None)  # raises the failure


def _ended(task: direct.DirectTask, run: Any, steps: _Attempt) -> State:
    """The state of a run whose caller closed it (its attempt ended Completed, with None)."""
    end = direct.attempt_end(task, run, steps.outcome)
    assert isinstance(end, Finish)
    return end.state


class _Attempt:
    """One attempt of a generator task, a step at a time: after `advance()` gives `_YIELDED`,
    `value` holds what the function yielded; after `_ENDED`, `outcome` is how the attempt ended."""

    def __init__(self, info: TaskRunInfo, log_prints: bool, emit: Emit, limit: float | None) -> None:
        self._current = run_current(info, log_prints, emit, steps=True)
        self._limit, self._start, self._started = limit, time.time(), time.monotonic()
        with self._current:
            self._generator = info.fn(*info.args, **info.kwargs)
        self.value: Any = None
        self.thrown: BaseException | None = None  # what the caller threw in, for the next step
        self.outcome: Executed = (Status.COMPLETED, None, None, self._start, self._start)

    def _left(self) -> float | None:
        """Seconds left of `timeout_seconds`, counted from the attempt's start."""
        return None if self._limit is None else self._limit - (time.monotonic() - self._started)

    def _end(self, status: Status, value: Any, error: BaseException | None) -> object:
        self._current.settle(failed=error is not None)
        self.outcome = (status, value, error, self._start, time.time())
        return _ENDED


class _Steps(_Attempt):
    """A sync generator's steps, each under what is left of its deadline (`interrupts.deadline`)."""

    def advance(self, sent: Any) -> object:
        thrown, self.thrown = self.thrown, None
        try:
            with self._current, self._deadline():
                self.value = self._generator.throw(thrown) if thrown is not None else self._generator.send(sent)
            return _YIELDED
        except StopIteration as stop:
            return self._end(Status.COMPLETED, stop.value, None)
        except RunTimedOut as error:
            return self._end(Status.TIMED_OUT, None, error)
        except KeyboardInterrupt:  # Ctrl-C in the caller's thread: not the task's failure
            raise
        except BaseException as error:  # noqa: BLE001 - the task's failure, as `execution.execute`
            return self._end(Status.FAILED, None, error)

    def close(self) -> None:
        with self._current:
            self._generator.close()
        self._end(Status.COMPLETED, None, None)

    def _deadline(self) -> Any:
        left = self._left()
        if left is None:
            return contextlib.nullcontext()
        return deadline(max(left, 1e-6), RunTimedOut, TIMED_OUT)  # 0 would set no alarm at all


class _AsyncSteps(_Attempt):
    """An `async def` generator's steps, each awaited under an `asyncio` deadline."""

    async def advance(self, sent: Any) -> object:
        import asyncio

        thrown, self.thrown = self.thrown, None
        left = self._left()
        timer = asyncio.timeout(None if left is None else max(left, 0.0))
        try:
            with self._current:
                async with timer:
                    step = self._generator.athrow(thrown) if thrown is not None else self._generator.asend(sent)
                    self.value = await step
            return _YIELDED
        except StopAsyncIteration:
            return self._end(Status.COMPLETED, None, None)
        except TimeoutError as error:
            if timer.expired():
                return self._end(Status.TIMED_OUT, None, RunTimedOut(TIMED_OUT))
            return self._end(Status.FAILED, None, error)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return self._end(Status.FAILED, None, asyncio.CancelledError())
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - the task's failure, as `execution.aexecute`
            return self._end(Status.FAILED, None, error)

    async def close(self) -> None:
        with self._current:
            await self._generator.aclose()
        self._end(Status.COMPLETED, None, None)
