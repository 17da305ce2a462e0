"""Running one flow run, sync or async: its attempts, its deadline, Ctrl-C, its final state.

The final state is `flow_states.final_state`'s (Prefect's rule, SPEC §1). The steps of a run
(`start`, `call_in_run`, `attempt_state`, `is_last`, `finish`, ...) are public: a generator
flow's run is made of them a step at a time (`flow_generators.py`).

An `async def` flow runs the same steps in the awaiting event loop (`run_async`): waiting
for its task runs happens in a thread, its deadline is an `asyncio` one, its retry delay an
`asyncio.sleep`, and a cancellation (Ctrl-C under `asyncio.run`) cancels its runs as Ctrl-C does.

Ctrl-C (and SIGTERM, in the main thread of the outermost flow) cancels the runs not
started, interrupts the running ones and frees shared memory before the
`KeyboardInterrupt` goes on; a second Ctrl-C meanwhile exits at once with code 130.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from . import caching, settings
from .context import FlowContext, open_context
from .current import current_flow
from .records import FlowRun
from .resolve import Found, collect, not_ready, substitute, wait_all
from .run_names import flow_run_name
from .runlog import FLOW_LOGGER, RunLogger, capture_prints, current_logger, flow_emitter, release_prints
from .flow_states import final_state
from .flow_deadline import FlowTimedOut, deadline, timeout_message
from .interrupts import second_interrupt_exits_at_once, sigterm_interrupts
from .states import Cancelled, Failed, Running, State, describe_error
from .exceptions import ParameterTypeError
from .shapes import Args, Kwargs

if TYPE_CHECKING:
    from .option_sets import FlowOptions
    from .runners.base import Runner
    from .signatures import CallSignature


class Flow(Protocol):
    """What a flow run reads of its flow (`flows.Flow`, which imports this module, not back)."""

    fn: Callable[..., Any]
    options: FlowOptions
    last_run: FlowRun | None
    _instance: Any  # what a flow defined in a class is bound to
    _unbound: Any  # the flow a bound one was made from
    _call: CallSignature
    _signature: inspect.Signature

    @property
    def name(self) -> str: ...

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]: ...

    def _converted_defaults(self, defaults: dict[str, Any]) -> dict[str, Any]: ...

    def _make_runner(self) -> Runner: ...

    def _call_hooks(self, flow_run: FlowRun, state: State) -> None: ...

_last_flow_run: FlowRun | None = None

Attempt = tuple[Any, BaseException | None, bool]  # (value, error, whether the flow's own deadline ended it)


def run_sync(flow: Flow, args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Any:
    upstream, needs = upstreams(args, kwargs, wait_for)
    wait_all(upstream)
    args, kwargs, blocked = inputs(args, kwargs, upstream, needs)
    call, blocked = caching.subflow_call(flow, blocked)
    if blocked is not None:
        return not_run(blocked, return_state)
    context, args, kwargs = start(flow, args, kwargs, is_async=False)
    if context.refused is not None:  # as in Prefect: failed before it ran, its on_failure hooks run
        return finish(flow, context, refused_state(context.refused), return_state, call)
    try:
        with sigterm_interrupts(context.owns_engine):
            run_hooks(flow, context, Running())
            state = _attempts(flow, context, args, kwargs)
    except KeyboardInterrupt:
        cancelled(flow, context)
        raise
    return finish(flow, context, state, return_state, call)


async def run_async(flow: Flow, args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Any:
    import asyncio  # an event loop runs this: loaded already (procflow itself does not load it)

    upstream, needs = upstreams(args, kwargs, wait_for)
    if not all(future.done() for future, _ in upstream):  # waiting must not block the loop
        await asyncio.to_thread(wait_all, upstream)
    args, kwargs, blocked = inputs(args, kwargs, upstream, needs)
    call, blocked = caching.subflow_call(flow, blocked)
    if blocked is not None:
        return not_run(blocked, return_state)
    context, args, kwargs = start(flow, args, kwargs, is_async=True)
    if context.refused is not None:
        return finish(flow, context, refused_state(context.refused), return_state, call)
    try:
        run_hooks(flow, context, Running())
        state = await _async_attempts(flow, context, args, kwargs)
    except (KeyboardInterrupt, asyncio.CancelledError):
        cancelled(flow, context)
        raise
    return finish(flow, context, state, return_state, call)


def start(flow: Flow, args: Args, kwargs: Kwargs, is_async: bool) -> tuple[FlowContext, Args, Kwargs]:
    """Bind the arguments, make the run's record and context, and announce it."""
    global _last_flow_run
    if flow._instance is not None:
        args = (flow._instance, *args)
    bound = flow._call.bind(flow.name, args, kwargs)
    refused = None
    if flow.options.validate_parameters:
        try:
            bound = inspect.BoundArguments(flow._signature, flow.validate_parameters(bound.arguments))
            args, kwargs = bound.args, bound.kwargs
        except ParameterTypeError as error:
            refused = error
    passed = set(bound.arguments)
    bound.apply_defaults()
    if flow.options.validate_parameters and refused is None and len(bound.arguments) > len(passed):
        changed = _converted_defaults(flow, bound, passed)
        if changed:  # then the function is called with them, not with its own defaults
            bound.arguments.update(changed)
            args, kwargs = bound.args, bound.kwargs
    parent = current_flow.get()
    flow_run = FlowRun(flow_run_name(flow, bound.arguments), flow.name, parameters=dict(bound.arguments),
                       start_time=time.time(), parent=parent.flow_run if parent else None)
    (flow._unbound or flow).last_run = flow.last_run = flow_run
    if parent is None:
        _last_flow_run = flow_run
    log_prints = flow.options.log_prints if flow.options.log_prints is not None else (
        parent.tracker.log_prints if parent else bool(settings.PREFECT_LOGGING_LOG_PRINTS.value()))
    context = open_context(flow_run, None if parent else flow._make_runner(), log_prints, parent)
    context.is_async, context.flow, context.refused = is_async, flow, refused
    caching.start_flow_run(context.tracker, flow, parent.tracker if parent else None)
    context.observer.flow_started(flow_run)
    if refused is not None:
        FLOW_LOGGER.error(f"Flow run '{flow_run.name}' - {_REFUSED} {refused}")
    return context, args, kwargs


def _converted_defaults(flow: Flow, bound: inspect.BoundArguments, passed: set[str]) -> dict[str, Any]:
    """The defaults the call left that their annotations convert (a dict default of a model
    parameter becomes the model), by name, as converted."""
    defaults = {name: value for name, value in bound.arguments.items() if name not in passed}
    converted = flow._converted_defaults(defaults)
    return {name: value for name, value in converted.items() if value is not defaults[name]}


def not_run(state: State, return_state: bool) -> Any:
    """A subflow call that does not run: its upstream did not complete (`NotReady`, marked as
    a flow run's state, as Prefect's has its own flow run) or its cached state is reused."""
    if not state.state_details:
        state = state.of_flow_run(uuid.uuid4())
    return state if return_state else state._result()


_REFUSED = "Validation of flow parameters failed with error:"  # Prefect's words


def refused_state(error: BaseException) -> State:
    return Failed(error, message=f"{_REFUSED} {describe_error(error)}")


def finish(flow: Flow, context: FlowContext, state: State, return_state: bool, call: Any = None) -> Any:
    flow_run = context.flow_run
    state = state.of_flow_run(flow_run.id)
    caching.remember_subflow(call, state)  # a cached subflow's state names the run that made it
    flow_run.state, flow_run.end_time = state, time.time()
    FLOW_LOGGER.info(f"Flow run '{flow_run.name}' - Finished in state {state!r}")
    run_hooks(flow, context, state)
    context.observer.flow_finished(flow_run)
    _close(context)
    if return_state:
        return state
    return state._result()  # a failed flow raises the exception of its first failed run


def run_hooks(flow: Flow, context: FlowContext, state: State) -> None:
    """The flow's hooks for `state`, with its run current (`get_run_context()` works in them, as in Prefect)."""
    token = current_flow.set(context)
    try:
        flow._call_hooks(context.flow_run, state)
    finally:
        current_flow.reset(token)


def _attempts(flow: Flow, context: FlowContext, args: Args, kwargs: Kwargs) -> State:
    for attempt in range(flow.options.retries + 1):
        first_run, started = attempt_begins(context, attempt)
        called = call_in_run(flow, context, lambda: flow.fn(*args, **kwargs), flow.options.timeout_seconds)
        state = attempt_state(flow, context, called, started, first_run)
        if is_last(flow, context, state, attempt):
            return state
        time.sleep(flow.options.retry_delay_seconds)
    raise AssertionError("unreachable")


async def _async_attempts(flow: Flow, context: FlowContext, args: Args, kwargs: Kwargs) -> State:
    import asyncio  # an event loop runs this: loaded already (procflow itself does not load it)

    for attempt in range(flow.options.retries + 1):
        first_run, started = attempt_begins(context, attempt)
        called = await acall_in_run(flow, context, lambda: flow.fn(*args, **kwargs), flow.options.timeout_seconds)
        state = await aattempt_state(flow, context, called, started, first_run)
        if is_last(flow, context, state, attempt):
            return state
        await asyncio.sleep(flow.options.retry_delay_seconds)
    raise AssertionError("unreachable")


def attempt_state(flow: Flow, context: FlowContext, called: Attempt, started: float, first_run: int) -> State:
    """The attempt's state once the runs it left going are done: the flow's `timeout_seconds`
    covers them too (counted from `started`), and a timed-out attempt cancels them."""
    value, error, timed_out = called
    if error is None and flow.options.timeout_seconds is not None:
        left = flow.options.timeout_seconds - (time.monotonic() - started)
        if not context.engine.wait_for(context.tracker, max(left, 0.0)):
            value, error, timed_out = None, FlowTimedOut(timeout_message(flow.options.timeout_seconds)), True
    if timed_out:
        context.engine.cancel(context.tracker, only_this_flow=not context.owns_engine)
    context.engine.wait_for(context.tracker)
    return final_state(value, error, context.flow_run.task_runs[first_run:], timed_out)


async def aattempt_state(flow: Flow, context: FlowContext, called: Attempt, started: float,
                         first_run: int) -> State:
    """`attempt_state` in an event loop: the waits happen in a thread."""
    import asyncio

    value, error, timed_out = called
    if error is None and flow.options.timeout_seconds is not None:
        left = flow.options.timeout_seconds - (time.monotonic() - started)
        if not await asyncio.to_thread(context.engine.wait_for, context.tracker, max(left, 0.0)):
            value, error, timed_out = None, FlowTimedOut(timeout_message(flow.options.timeout_seconds)), True
    if timed_out:
        await asyncio.to_thread(context.engine.cancel, context.tracker, only_this_flow=not context.owns_engine)
    await asyncio.to_thread(context.engine.wait_for, context.tracker)
    return final_state(value, error, context.flow_run.task_runs[first_run:], timed_out)


def attempt_begins(context: FlowContext, attempt: int) -> tuple[int, float]:
    """(the index of the attempt's first task run, when it started)."""
    context.flow_run.run_count = attempt + 1
    return len(context.flow_run.task_runs), time.monotonic()


def is_last(flow: Flow, context: FlowContext, state: State, attempt: int) -> bool:
    if state.is_completed() or attempt == flow.options.retries:
        return True
    FLOW_LOGGER.info(f"Flow run '{context.flow_run.name}' - Received non-final state 'AwaitingRetry' "
                     f"when proposing final state {state!r} and will attempt to run again...")
    return False


def call_in_run(flow: Flow, context: FlowContext, call: Callable[[], Any], seconds: float | None) -> Attempt:
    """`call()` with the flow run current, interrupted after `seconds` (the flow's deadline, or
    what is left of it for a generator flow's step)."""
    fired = threading.Event()  # stays unset without a deadline
    try:
        with current(context), contextlib.ExitStack() as stack:
            if seconds is not None:
                fired = stack.enter_context(deadline(max(seconds, 1e-6)))  # 0 would set no alarm
            return call(), None, False
    except Exception as error:  # noqa: BLE001 - the flow's failure is its state
        if fired.is_set():  # this flow's own deadline; a nested flow's timeout is an ordinary error here
            # bare: raised by the deadline's thread
            own = error if error.args else FlowTimedOut(timeout_message(flow.options.timeout_seconds))
            return None, own, True
        return None, error, False


async def acall_in_run(flow: Flow, context: FlowContext, call: Callable[[], Any], seconds: float | None) -> Attempt:
    """`await call()` with the flow run current, under an `asyncio` deadline of `seconds`."""
    import asyncio  # an event loop runs this: loaded already (procflow itself does not load it)

    timer = asyncio.timeout(None if seconds is None else max(seconds, 0.0))
    try:
        with current(context):
            async with timer:
                return await call(), None, False
    except TimeoutError as error:
        if timer.expired():
            return None, FlowTimedOut(timeout_message(flow.options.timeout_seconds)), True
        return None, error, False
    except Exception as error:  # noqa: BLE001 - the flow's failure is its state
        return None, error, False


@contextlib.contextmanager
def current(context: FlowContext) -> Iterator[None]:
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


def cancelled(flow: Flow, context: FlowContext) -> None:
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
        run_hooks(flow, context, flow_run.state)
        _close(context)  # the engine publishes every cancelled run before it stops
        context.observer.flow_finished(flow_run)


def upstreams(args: Args, kwargs: Kwargs, wait_for: Any) -> tuple[Found, bool]:
    """A subflow call's upstreams (the futures in its arguments, then `wait_for`'s), and
    whether its arguments need their futures replaced by results."""
    found: Found = []
    needs = collect(args, found) | collect(kwargs, found)
    collect(wait_for, found)
    return found, needs


def inputs(args: Args, kwargs: Kwargs, upstream: Found, needs: bool) -> tuple[Args, Kwargs, State | None]:
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


def last_flow_run() -> FlowRun | None:
    """The `FlowRun` of the most recent outermost flow call in this process (`Flow.last_run` has each flow's)."""
    return _last_flow_run


def set_last_flow_run(run: FlowRun | None) -> None:
    """For `prefect_test_harness`: what `last_flow_run()` returns until the next flow call."""
    global _last_flow_run
    _last_flow_run = run
