"""A generator flow (`for batch in batches(): ...`): one flow run, alive while it yields.

As in Prefect 3.8 (`run_generator_flow_sync` / `_async`), and as `task_generators.py` does
for a task:
- the run begins at the caller's first `next()`; each value the function yields goes to
  the caller as it comes (`send()` / `throw()` reach the function), with the flow run
  current around each step and not between them (what the caller does with a value is
  not the flow's work);
- the run ends when the function returns: its task runs are waited for, its state is
  Prefect's final state for the value returned (the `StopIteration` value the caller sees);
- a failure is retried with `retries` (the values come again), the last one raised in the
  caller; `timeout_seconds` counts from the attempt's start, the caller's time included;
- a caller that stops early (`break`, `close()`) closes the function's generator and the
  run ends as if it had returned None;
- `return_state=True` is refused on the first `next()`.

Never served from the subflow cache (a generator's values are not stored).
"""

from __future__ import annotations

import time
from typing import Any, AsyncGenerator, Callable, Generator

from . import flow_runs
from .flow_runs import Attempt, Flow
from .interrupts import sigterm_interrupts
from .context import FlowContext
from .resolve import wait_all
from .shapes import Args, Kwargs
from .states import Running

REFUSED = "The return_type for a generator flow must be 'result'"  # Prefect's words


def run(flow: Flow, args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Generator[Any, Any, Any]:
    if return_state:
        raise ValueError(REFUSED)
    upstream, needs = flow_runs.upstreams(args, kwargs, wait_for)
    wait_all(upstream)
    args, kwargs, blocked = flow_runs.inputs(args, kwargs, upstream, needs)
    if blocked is not None:
        return flow_runs.not_run(blocked, False)
    context, args, kwargs = flow_runs.start(flow, args, kwargs, is_async=False)
    if context.refused is not None:
        return flow_runs.finish(flow, context, flow_runs.refused_state(context.refused), False)
    try:
        flow_runs.run_hooks(flow, context, Running())
        for attempt in range(flow.options.retries + 1):
            first_run, started = flow_runs.attempt_begins(context, attempt)
            steps = _Steps(flow, context, args, kwargs, started)
            sent: Any = None
            while (called := steps.advance(sent)) is None:
                try:
                    sent = yield steps.value
                except GeneratorExit:  # the caller stopped early: the run ends as a return of None
                    steps.close()
                    flow_runs.finish(flow, context, flow_runs.attempt_state(flow, context, (None, None, False),
                                                                            started, first_run), False)
                    raise
                except BaseException as thrown:  # noqa: BLE001 - `throw()` reaches the function
                    steps.thrown = thrown
            state = flow_runs.attempt_state(flow, context, called, started, first_run)
            if flow_runs.is_last(flow, context, state, attempt):
                break
            time.sleep(flow.options.retry_delay_seconds)
    except KeyboardInterrupt:
        flow_runs.cancelled(flow, context)
        raise
    return flow_runs.finish(flow, context, state, False)


async def arun(flow: Flow, args: Args, kwargs: Kwargs, wait_for: Any,
               return_state: bool) -> AsyncGenerator[Any, Any]:
    """An `async def` generator flow: the same run, its steps awaited in the caller's loop."""
    import asyncio  # an event loop runs this: loaded already

    if return_state:
        raise ValueError(REFUSED)
    upstream, needs = flow_runs.upstreams(args, kwargs, wait_for)
    if upstream:
        await asyncio.to_thread(wait_all, upstream)
    args, kwargs, blocked = flow_runs.inputs(args, kwargs, upstream, needs)
    if blocked is not None:
        flow_runs.not_run(blocked, False)
        return
    context, args, kwargs = flow_runs.start(flow, args, kwargs, is_async=True)
    if context.refused is not None:
        flow_runs.finish(flow, context, flow_runs.refused_state(context.refused), False)
        return
    try:
        flow_runs.run_hooks(flow, context, Running())
        for attempt in range(flow.options.retries + 1):
            first_run, started = flow_runs.attempt_begins(context, attempt)
            steps = _AsyncSteps(flow, context, args, kwargs, started)
            sent: Any = None
            while (called := await steps.advance(sent)) is None:
                try:
                    sent = yield steps.value
                except GeneratorExit:
                    await steps.close()
                    ended = await flow_runs.aattempt_state(flow, context, (None, None, False), started, first_run)
                    flow_runs.finish(flow, context, ended, False)
                    raise
                except BaseException as thrown:  # noqa: BLE001 - `athrow()` reaches the function
                    steps.thrown = thrown
            state = await flow_runs.aattempt_state(flow, context, called, started, first_run)
            if flow_runs.is_last(flow, context, state, attempt):
                break
            await asyncio.sleep(flow.options.retry_delay_seconds)
    except (KeyboardInterrupt, asyncio.CancelledError):
        flow_runs.cancelled(flow, context)
        raise
    flow_runs.finish(flow, context, state, False)  # raises the failure


class _Attempt:
    """One attempt of a generator flow, a step at a time: `advance()` gives None after a step
    that yielded (`value` holds it), else how the attempt ended (`flow_runs.Attempt`)."""

    def __init__(self, flow: Flow, context: FlowContext, args: Args, kwargs: Kwargs, started: float) -> None:
        self._flow, self._context, self._started = flow, context, started
        with flow_runs.current(context):
            self._generator = flow.fn(*args, **kwargs)
        self.value: Any = None
        self.thrown: BaseException | None = None  # what the caller threw in, for the next step

    def _left(self) -> float | None:
        """Seconds left of `timeout_seconds`, counted from the attempt's start."""
        limit = self._flow.options.timeout_seconds
        return None if limit is None else limit - (time.monotonic() - self._started)

    def _next_step(self, sent: Any, send: Callable[[Any], Any],
                   throw: Callable[[BaseException], Any]) -> Callable[[], Any]:
        """The call that makes the next step: what the caller threw in, else what it sent."""
        thrown, self.thrown = self.thrown, None
        return (lambda: throw(thrown)) if thrown is not None else (lambda: send(sent))

    def _stepped(self, called: Attempt, stop: type[Exception]) -> Attempt | None:
        value, error, timed_out = called
        if isinstance(error, stop):  # the function returned: the attempt's value is its return value
            return getattr(error, "value", None), None, False
        if error is None and not timed_out:
            self.value = value
            return None
        return called


class _Steps(_Attempt):
    def advance(self, sent: Any) -> Attempt | None:
        step = self._next_step(sent, self._generator.send, self._generator.throw)
        with sigterm_interrupts(self._context.owns_engine):
            called = flow_runs.call_in_run(self._flow, self._context, step, self._left())
        return self._stepped(called, StopIteration)

    def close(self) -> None:
        with flow_runs.current(self._context):
            self._generator.close()


class _AsyncSteps(_Attempt):
    async def advance(self, sent: Any) -> Attempt | None:
        step = self._next_step(sent, self._generator.asend, self._generator.athrow)
        called = await flow_runs.acall_in_run(self._flow, self._context, step, self._left())
        return self._stepped(called, StopAsyncIteration)

    async def close(self) -> None:
        with flow_runs.current(self._context):
            await self._generator.aclose()

