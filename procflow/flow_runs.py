"""Running one flow run, sync or async: its attempts, its deadline, Ctrl-C, its final state.

The final state follows Prefect 2's rule (SPEC §1): the function raised -> `Failed` with that
exception; it returned `None` -> every task run of the flow run counts; it returned a
future or a state, or a list, tuple, set or dict (its values) made only of those -> those
count; a state it made itself (`return Failed(message=...)`) -> that state; anything else,
a mix of states and other values included -> data, `Completed`. Among counted runs, Prefect's
precedence (`aggregate.py`): any cancelled -> `Cancelled('1/3 states cancelled.')`, else any
not completed -> `Failed('1/3 states failed.')` (or `'… states are not final.'`). A subflow's
state (`return_state=True`) counts as a run's: its flow run is in its `state_details`.
As in Prefect, futures in the return value become their *States*: `return t.submit(1)`
makes the call return `Completed()`, whose `.result()` is 1. Calling a failed flow raises
the exception of the first failed run that counted (an `UpstreamTaskError` for a run that
never ran); its state's `.result(raise_on_failure=False)` is what it returned.

An `async def` flow runs the same steps in the awaiting event loop (`run_async`): waiting
for its task runs happens in a thread, its deadline is an `asyncio` one, its retry delay an
`asyncio.sleep`, and a cancellation (Ctrl-C under `asyncio.run`) cancels its runs as Ctrl-C does.

Ctrl-C (and SIGTERM, in the main thread of the outermost flow) cancels the runs not
started, interrupts the running ones and frees shared memory before the
`KeyboardInterrupt` goes on; a second Ctrl-C meanwhile exits at once with code 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterator

from . import caching, settings
from .aggregate import aggregate
from .annotations import quote
from .context import FlowContext, open_context
from .current import current_flow
from .records import FlowRun, TaskRun
from .resolve import Found, collect, not_ready, substitute, wait_all
from .run_names import flow_run_name
from .runlog import FLOW_LOGGER, RunLogger, capture_prints, current_logger, flow_emitter, release_prints
from .flow_deadline import FlowTimedOut, deadline, timeout_message
from .states import Cancelled, Completed, Failed, Running, State, describe_error
from .exceptions import ParameterTypeError
from .shapes import Args, Kwargs

if TYPE_CHECKING:
    from .flows import Flow

_last_flow_run: FlowRun | None = None

Attempt = tuple[Any, BaseException | None, bool]  # (value, error, whether the flow's own deadline ended it)


def run_sync(flow: Flow[..., Any], args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Any:
    upstream, needs = _upstreams(args, kwargs, wait_for)
    wait_all(upstream)
    args, kwargs, blocked = _inputs(args, kwargs, upstream, needs)
    call, blocked = caching.subflow_call(flow, blocked)
    if blocked is not None:
        return _not_run(blocked, return_state)
    context, args, kwargs = _start(flow, args, kwargs, is_async=False)
    if context.refused is not None:  # as in Prefect: failed before it ran, its on_failure hooks run
        return _finish(flow, context, _refused_state(context.refused), return_state, call)
    try:
        with _interrupts_become_keyboard_interrupt(context.owns_engine):
            _run_hooks(flow, context, Running())
            state = _attempts(flow, context, args, kwargs)
    except KeyboardInterrupt:
        _cancelled(flow, context)
        raise
    return _finish(flow, context, state, return_state, call)


async def run_async(flow: Flow[..., Any], args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Any:
    upstream, needs = _upstreams(args, kwargs, wait_for)
    if not all(future.done() for future, _ in upstream):  # waiting must not block the loop
        await asyncio.to_thread(wait_all, upstream)
    args, kwargs, blocked = _inputs(args, kwargs, upstream, needs)
    call, blocked = caching.subflow_call(flow, blocked)
    if blocked is not None:
        return _not_run(blocked, return_state)
    context, args, kwargs = _start(flow, args, kwargs, is_async=True)
    if context.refused is not None:
        return _finish(flow, context, _refused_state(context.refused), return_state, call)
    try:
        _run_hooks(flow, context, Running())
        state = await _async_attempts(flow, context, args, kwargs)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _cancelled(flow, context)
        raise
    return _finish(flow, context, state, return_state, call)


def _start(flow: Flow[..., Any], args: Args, kwargs: Kwargs, is_async: bool) -> tuple[FlowContext, Args, Kwargs]:
    """Bind the arguments, make the run's record and context, and announce it."""
    global _last_flow_run
    if flow._instance is not None:
        args = (flow._instance, *args)
    bound = flow._call.bind(flow.name, args, kwargs)
    refused = None
    if flow.should_validate_parameters:
        try:
            bound = inspect.BoundArguments(flow._signature, flow.validate_parameters(bound.arguments))
            args, kwargs = bound.args, bound.kwargs
        except ParameterTypeError as error:
            refused = error
    bound.apply_defaults()
    parent = current_flow.get()
    flow_run = FlowRun(flow_run_name(flow, bound.arguments), flow.name, parameters=dict(bound.arguments),
                       start_time=time.time(), parent=parent.flow_run if parent else None)
    (flow._unbound or flow).last_run = flow.last_run = flow_run
    if parent is None:
        _last_flow_run = flow_run
    log_prints = flow.log_prints if flow.log_prints is not None else (
        parent.tracker.log_prints if parent else bool(settings.PREFECT_LOGGING_LOG_PRINTS.value()))
    context = open_context(flow_run, None if parent else flow._make_runner(), log_prints, parent)
    context.is_async, context.flow, context.refused = is_async, flow, refused
    caching.start_flow_run(context.tracker, flow, parent.tracker if parent else None)
    context.observer.flow_started(flow_run)
    if refused is not None:
        FLOW_LOGGER.error(f"Flow run '{flow_run.name}' - {_REFUSED} {refused}")
    return context, args, kwargs


def _not_run(state: State, return_state: bool) -> Any:
    """A subflow call that does not run: its upstream did not complete (`NotReady`, marked as
    a flow run's state, as Prefect's has its own flow run) or its cached state is reused."""
    if not state.state_details:
        state = state.of_flow_run(uuid.uuid4())
    return state if return_state else state._result()


_REFUSED = "Validation of flow parameters failed with error:"  # Prefect's words


def _refused_state(error: BaseException) -> State:
    return Failed(error, message=f"{_REFUSED} {describe_error(error)}")


def _finish(flow: Flow[..., Any], context: FlowContext, state: State, return_state: bool, call: Any = None) -> Any:
    flow_run = context.flow_run
    state = state.of_flow_run(flow_run.id)
    caching.remember_subflow(call, state)  # a cached subflow's state names the run that made it
    flow_run.state, flow_run.end_time = state, time.time()
    FLOW_LOGGER.info(f"Flow run '{flow_run.name}' - Finished in state {state!r}")
    _run_hooks(flow, context, state)
    context.observer.flow_finished(flow_run)
    _close(context)
    if return_state:
        return state
    return state._result()  # a failed flow raises the exception of its first failed run


def _run_hooks(flow: Flow[..., Any], context: FlowContext, state: State) -> None:
    """The flow's hooks for `state`, with its run current (`get_run_context()` works in them, as in Prefect)."""
    token = current_flow.set(context)
    try:
        flow._call_hooks(context.flow_run, state)
    finally:
        current_flow.reset(token)


def _attempts(flow: Flow[..., Any], context: FlowContext, args: Args, kwargs: Kwargs) -> State:
    for attempt in range(flow.retries + 1):
        first_run, started = _attempt_begins(context, attempt)
        value, error, timed_out = _call_fn(flow, context, args, kwargs)
        if error is None and flow.timeout_seconds is not None:  # the limit covers the runs it left going too
            left = flow.timeout_seconds - (time.monotonic() - started)
            if not context.engine.wait_for(context.tracker, max(left, 0.0)):
                value, error, timed_out = None, FlowTimedOut(timeout_message(flow.timeout_seconds)), True
        if timed_out:
            context.engine.cancel(context.tracker, only_this_flow=not context.owns_engine)
        context.engine.wait_for(context.tracker)
        state = final_state(value, error, context.flow_run.task_runs[first_run:], timed_out)
        if _is_last(flow, context, state, attempt):
            return state
        time.sleep(flow.retry_delay_seconds)
    raise AssertionError("unreachable")


async def _async_attempts(flow: Flow[..., Any], context: FlowContext, args: Args, kwargs: Kwargs) -> State:
    for attempt in range(flow.retries + 1):
        first_run, started = _attempt_begins(context, attempt)
        value, error, timed_out = await _async_call_fn(flow, context, args, kwargs)
        if error is None and flow.timeout_seconds is not None:
            left = flow.timeout_seconds - (time.monotonic() - started)
            if not await asyncio.to_thread(context.engine.wait_for, context.tracker, max(left, 0.0)):
                value, error, timed_out = None, FlowTimedOut(timeout_message(flow.timeout_seconds)), True
        if timed_out:
            await asyncio.to_thread(context.engine.cancel, context.tracker, only_this_flow=not context.owns_engine)
        await asyncio.to_thread(context.engine.wait_for, context.tracker)
        state = final_state(value, error, context.flow_run.task_runs[first_run:], timed_out)
        if _is_last(flow, context, state, attempt):
            return state
        await asyncio.sleep(flow.retry_delay_seconds)
    raise AssertionError("unreachable")


def _attempt_begins(context: FlowContext, attempt: int) -> tuple[int, float]:
    """(the index of the attempt's first task run, when it started)."""
    context.flow_run.run_count = attempt + 1
    return len(context.flow_run.task_runs), time.monotonic()


def _is_last(flow: Flow[..., Any], context: FlowContext, state: State, attempt: int) -> bool:
    if state.is_completed() or attempt == flow.retries:
        return True
    FLOW_LOGGER.info(f"Flow run '{context.flow_run.name}' - Received non-final state 'AwaitingRetry' "
                     f"when proposing final state {state!r} and will attempt to run again...")
    return False


def _call_fn(flow: Flow[..., Any], context: FlowContext, args: Args, kwargs: Kwargs) -> Attempt:
    fired = threading.Event()  # stays unset without a deadline
    try:
        with _current(context), contextlib.ExitStack() as stack:
            if flow.timeout_seconds is not None:
                fired = stack.enter_context(deadline(flow.timeout_seconds))
            return flow.fn(*args, **kwargs), None, False
    except Exception as error:  # noqa: BLE001 - the flow's failure is its state
        if fired.is_set():  # this flow's own deadline; a nested flow's timeout is an ordinary error here
            own = error if error.args else FlowTimedOut(timeout_message(flow.timeout_seconds))  # bare: a thread's
            return None, own, True
        return None, error, False


async def _async_call_fn(flow: Flow[..., Any], context: FlowContext, args: Args, kwargs: Kwargs) -> Attempt:
    deadline = asyncio.timeout(flow.timeout_seconds)
    try:
        with _current(context):
            async with deadline:
                return await flow.fn(*args, **kwargs), None, False
    except TimeoutError as error:
        if deadline.expired():
            return None, FlowTimedOut(timeout_message(flow.timeout_seconds)), True
        return None, error, False
    except Exception as error:  # noqa: BLE001 - the flow's failure is its state
        return None, error, False


@contextlib.contextmanager
def _current(context: FlowContext) -> Iterator[None]:
    """The flow run is current: `current_flow`, its logger, and its print capture (None inherits
    the parent flow's; a nested flow's False opts out of it, as in Prefect)."""
    token = current_flow.set(context)
    emit = flow_emitter(context.flow_run.name)
    logger_token = current_logger.set(RunLogger(emit, context.flow_run.name))
    try:
        with capture_prints(emit) if context.tracker.log_prints else release_prints():
            yield
    finally:
        current_logger.reset(logger_token)
        current_flow.reset(token)


def _cancelled(flow: Flow[..., Any], context: FlowContext) -> None:
    """Ctrl-C: cancel what is pending, stop what runs, free memory, say what did not finish."""
    with second_interrupt_exits_at_once():
        context.engine.cancel(context.tracker)
        flow_run = context.flow_run
        unfinished = [run for run in flow_run.task_runs if not run.state.is_final() or run.state.is_cancelled()]
        flow_run.state = Cancelled(f"Flow run was interrupted; {len(unfinished)} task run(s) did not finish.",
                                   state_details={"flow_run_id": flow_run.id})
        flow_run.end_time = time.time()
        FLOW_LOGGER.error(f"Flow run '{flow_run.name}' - Interrupted: {len(unfinished)} of "
                          f"{len(flow_run.task_runs)} task runs did not finish; workers stopped")
        _run_hooks(flow, context, flow_run.state)
        _close(context)  # the engine publishes every cancelled run before it stops
        context.observer.flow_finished(flow_run)


def final_state(value: Any, error: BaseException | None, runs: list[TaskRun], timed_out: bool = False) -> State:
    """Prefect 2's rule for a flow run's final state (see the module docstring)."""
    if error is not None:
        if timed_out:
            return Failed(error, message=str(error), name="TimedOut")  # Prefect's message
        return Failed(error, message=f"Flow run encountered an exception: {describe_error(error)}")
    if isinstance(value, State) and _made_by_hand(value, runs):
        return value  # a state the flow made itself is its final state, as in Prefect
    if value is None:  # Prefect 2: every task run of the flow run counts; the call returns None
        states = [run.state for run in runs] or None
        data = states
    else:
        data = _futures_to_states(value)
        states = _returned_states(data)
    if states is None:
        return Completed(None if value is None else data)
    state = aggregate(states, data)
    if value is None and state.is_completed():  # the call returns None, as the function did
        return Completed(None, message=state.message)
    return state


def _made_by_hand(state: State, runs: list[TaskRun]) -> bool:
    """Not a run's state: not read from a future, not a task run's, not a flow run's (a subflow's)."""
    return state.holder is None and not state.state_details and not any(state is run.state for run in runs)


def _returned_states(data: Any) -> list[State] | None:
    """The States a flow returned: one, or a collection made only of States; else None (data)."""
    if isinstance(data, State):
        return [data]
    items = data.values() if isinstance(data, dict) else data if isinstance(data, (list, tuple, set)) else None
    if items and all(isinstance(item, State) for item in items):
        return list(items)
    return None


def _futures_to_states(value: Any) -> Any:
    """Futures anywhere in the return value become their States, as in Prefect; a returned
    `quote(...)` is returned as it is."""
    if isinstance(value, quote):
        return value
    return substitute(value, lambda future, _: future.state)


def _upstreams(args: Args, kwargs: Kwargs, wait_for: Any) -> tuple[Found, bool]:
    """A subflow call's upstreams (the futures in its arguments, then `wait_for`'s), and
    whether its arguments need their futures replaced by results."""
    found: Found = []
    needs = collect(args, found) | collect(kwargs, found)
    collect(wait_for, found)
    return found, needs


def _inputs(args: Args, kwargs: Kwargs, upstream: Found, needs: bool) -> tuple[Args, Kwargs, State | None]:
    """As Prefect does for a subflow, its upstreams done: the results of the futures in its
    arguments, not the futures; when an upstream did not complete (and is not `allow_failure`),
    the subflow does not run, and the third item is its `NotReady` state."""
    blocked = not_ready(upstream)
    if blocked is not None:
        return args, kwargs, blocked
    if needs:
        return substitute(args), substitute(kwargs), None
    return args, kwargs, None


def _close(context: FlowContext) -> None:
    context.engine.close_flow(context.tracker)
    if context.owns_engine:
        context.engine.stop()


@contextlib.contextmanager
def _interrupts_become_keyboard_interrupt(outermost: bool) -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C while an outermost flow runs in the main thread."""
    if not outermost or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def second_interrupt_exits_at_once() -> Iterator[None]:
    """While a Ctrl-C is being handled, another one (or SIGTERM) ends the process with 130.

    The previous handlers come back afterwards: in a session that goes on (IPython,
    Jupyter), a later Ctrl-C interrupts again instead of killing the interpreter.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _exit_now)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be restored
                signal.signal(signum, handler)


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(130)


def last_flow_run() -> FlowRun | None:
    """The `FlowRun` of the most recent outermost flow call in this process (`Flow.last_run` has each flow's)."""
    return _last_flow_run


def set_last_flow_run(run: FlowRun | None) -> None:
    """For `prefect_test_harness`: what `last_flow_run()` returns until the next flow call."""
    global _last_flow_run
    _last_flow_run = run
