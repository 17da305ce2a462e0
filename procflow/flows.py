"""`Flow` and `@flow`: a flow run, waiting for its tasks at the end, and its final state.

The final state follows Prefect 2's rule: the function raised -> `Failed` with that
exception; it returned `None` -> every task run of the flow run counts; it returned a
future or a state, or a list, tuple, set or dict (its values) made only of those -> those
count; a state it made itself (`return Failed(message=...)`) -> that state; anything else,
a mix of states and other values included -> data, `Completed`. Among counted runs: any
cancelled -> `Cancelled('1/3 states cancelled.')`, else any not completed -> `Failed`.
As in Prefect, futures in the return value become their *States*: `return t.submit(1)`
makes the call return `Completed()`, whose `.result()` is 1. Calling a failed flow raises
the exception of the first failed run that counted (an `UpstreamTaskError` for a run that
never ran); its state's `.result(raise_on_failure=False)` is what it returned.

Ctrl-C (and SIGTERM, in the main thread of the outermost flow) cancels the runs not
started, interrupts the running ones and frees shared memory before the
`KeyboardInterrupt` goes on; a second Ctrl-C meanwhile exits at once with code 130.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import os
import random
import signal
import threading
import time
from typing import Any, Callable, Generic, Iterator, ParamSpec, TypeVar, overload

from . import hooks, options
from .current import FlowRunInfo, call_naming, naming_flow_run
from .context import FlowContext, current_flow, open_context
from .records import FlowRun, TaskRun
from .resolve import Found, collect, substitute
from .runlog import FLOW_LOGGER, RunLogger, capture_prints, current_logger, flow_emitter, release_prints
from .runners.base import Runner
from .runners.processes import ProcessPoolTaskRunner
from .runners.threads import interrupt_thread
from .states import Cancelled, Completed, Failed, ParameterBindError, Running, State, describe_error

P = ParamSpec("P")
R = TypeVar("R")

_last_flow_run: FlowRun | None = None


class FlowTimedOut(TimeoutError):
    """Raised in a flow's thread when it runs past its `timeout_seconds`."""


class Flow(hooks.FlowHookMethods, Generic[P, R]):
    """A function whose calls are flow runs."""

    def __init__(self, fn: Callable[P, R], name: str | None = None, task_runner: Runner | type | None = None,
                 log_prints: bool | None = None, flow_run_name: str | Callable[[], str] | None = None,
                 timeout_seconds: float | None = None, retries: int = 0, retry_delay_seconds: float = 0,
                 on_completion: list[Callable] | None = None, on_failure: list[Callable] | None = None,
                 on_running: list[Callable] | None = None, on_crashed: list[Callable] | None = None,
                 on_cancellation: list[Callable] | None = None, **prefect_options: Any) -> None:
        fn, self._method = options.unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {type(fn).__name__}")
        self.fn = fn
        # Prefect's default: the function's name with dashes (`my_flow` is flow 'my-flow')
        self.name: str = options.name("flow", name) or str(getattr(fn, "__name__", "flow")).replace("_", "-")
        owner = f"flow {self.name!r}"
        self.task_runner = options.task_runner(owner, task_runner)
        self.log_prints = options.flag(owner, "log_prints", log_prints)
        self.flow_run_name = options.text_or_callable(owner, "flow_run_name", flow_run_name)
        self.timeout_seconds = options.timeout(owner, "timeout_seconds", timeout_seconds)
        self.retries = options.whole(owner, "retries", retries)
        self.retry_delay_seconds = options.seconds(owner, "retry_delay_seconds", retry_delay_seconds) or 0
        self.state_hooks = hooks.hook_lists(owner, on_completion=on_completion, on_failure=on_failure,
                                            on_running=on_running, on_crashed=on_crashed,
                                            on_cancellation=on_cancellation)
        kept = options.prefect_extras(owner, prefect_options)  # Prefect's other options: see options.py
        self.description: str | None = kept["description"] or inspect.getdoc(fn)
        self.version: str | None = kept["version"]
        self.last_run: FlowRun | None = None
        self._signature = inspect.signature(fn)
        options.no_reserved_arguments(owner, self._signature)
        functools.update_wrapper(self, fn)

    def with_options(self, **options: Any) -> Flow[P, R]:
        current = {name: getattr(self, name) for name in (
            "name", "task_runner", "log_prints", "flow_run_name", "timeout_seconds", "retries", "retry_delay_seconds",
            "description", "version")}
        current.update({name: list(hook_list) for name, hook_list in self.state_hooks.items()})
        current.update(options)
        made = Flow(self.fn, **current)
        made._method, made._instance = self._method, self._instance  # a bound method stays bound
        return made

    def _call_hooks(self, flow_run: FlowRun, state: State) -> None:
        due = hooks.hooks_for(self.state_hooks, state)
        if due:
            hooks.call_hooks(due, self, flow_run, state, flow_emitter(flow_run.name))

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    # A flow defined in a class, called on an instance (see Task.__get__): the bound copy
    # passes the instance first and records `last_run` on the flow it was made from too.
    _instance: Any = None
    _unbound: Flow | None = None

    def __get__(self, instance: Any, owner: Any = None) -> Flow[P, R]:
        target = options.bound_target(self._method, instance, owner)
        if target is None:
            return self
        bound = copy.copy(self)
        bound._instance, bound._unbound = target, self
        return bound

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global _last_flow_run
        return_state = kwargs.pop("return_state", False)
        args, kwargs = _resolved_for_a_flow(args, kwargs, kwargs.pop("wait_for", None))
        if self._instance is not None:
            args = (self._instance, *args)
        if inspect.iscoroutinefunction(self.fn):
            raise TypeError(f"flow {self.name!r} is an `async def`: procflow runs flows as plain functions. "
                            "Make the flow a `def` (its tasks may stay `async def`: each runs in its own "
                            "event loop) and call it without `await`.")
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ParameterBindError(f"flow {self.name!r}: {error} (signature: {self.name}{self._signature})") from None
        bound.apply_defaults()
        parent = current_flow.get()
        flow_run = FlowRun(self._run_name(bound.arguments), self.name, parameters=dict(bound.arguments),
                           start_time=time.time(), parent=parent.flow_run if parent else None)
        (self._unbound or self).last_run = self.last_run = flow_run
        if parent is None:
            _last_flow_run = flow_run
        log_prints = self.log_prints if self.log_prints is not None else bool(parent and parent.tracker.log_prints)
        context = open_context(flow_run, None if parent else self._make_runner(), log_prints, parent)
        context.observer.flow_started(flow_run)
        try:
            with _interrupts_become_keyboard_interrupt(parent is None):
                self._call_hooks(flow_run, Running())
                state, value = self._run_attempts(context, args, kwargs)
        except KeyboardInterrupt:
            self._cancelled(context)
            raise
        flow_run.state, flow_run.end_time = state, time.time()
        FLOW_LOGGER.info(f"Flow run '{flow_run.name}' - Finished in state {state!r}")
        self._call_hooks(flow_run, state)
        context.observer.flow_finished(flow_run)
        _close(context)
        if return_state:
            return state
        return state.result()  # a failed flow raises the exception of its first failed run

    def _run_attempts(self, context: FlowContext, args: tuple, kwargs: dict) -> tuple[State, Any]:
        for attempt in range(self.retries + 1):
            context.flow_run.run_count = attempt + 1
            first_run = len(context.flow_run.task_runs)
            started = time.monotonic()
            value, error, timed_out = self._call_fn(context, args, kwargs)
            if error is None and self.timeout_seconds is not None:  # the limit covers the runs it left going too
                left = self.timeout_seconds - (time.monotonic() - started)
                if not context.engine.wait_for(context.tracker, max(left, 0.0)):
                    value, error, timed_out = None, FlowTimedOut(_timeout_message(self.timeout_seconds)), True
            if timed_out:
                context.engine.cancel(context.tracker, only_this_flow=not context.owns_engine)
            context.engine.wait_for(context.tracker)
            counted_runs = context.flow_run.task_runs[first_run:]
            state = final_state(value, error, counted_runs, timed_out)
            if state.is_completed() or attempt == self.retries:
                return state, value
            FLOW_LOGGER.info(f"Flow run '{context.flow_run.name}' - Received non-final state 'AwaitingRetry' "
                             f"when proposing final state {state!r} and will attempt to run again...")
            time.sleep(self.retry_delay_seconds)
        raise AssertionError("unreachable")

    def _call_fn(self, context: FlowContext, args: tuple,
                 kwargs: dict) -> tuple[Any, BaseException | None, bool]:
        """(value, error, whether this flow's own deadline ended it)."""
        token = current_flow.set(context)
        emit = flow_emitter(context.flow_run.name)
        logger_token = current_logger.set(RunLogger(emit, context.flow_run.name))
        fired = threading.Event()  # stays unset without a deadline
        try:
            with contextlib.ExitStack() as stack:
                # None inherits the parent flow's; a nested flow's False opts out of it (Prefect)
                stack.enter_context(capture_prints(emit) if context.tracker.log_prints else release_prints())
                if self.timeout_seconds is not None:
                    fired = stack.enter_context(_deadline(self.timeout_seconds))
                return self.fn(*args, **kwargs), None, False
        except Exception as error:  # noqa: BLE001 - the flow's failure is its state
            if fired.is_set():  # this flow's own deadline; a nested flow's timeout is an ordinary error here
                own = error if error.args else FlowTimedOut(_timeout_message(self.timeout_seconds))  # bare: a thread's
                return None, own, True
            return None, error, False
        finally:
            current_logger.reset(logger_token)
            current_flow.reset(token)

    def _cancelled(self, context: FlowContext) -> None:
        """Ctrl-C: cancel what is pending, stop what runs, free memory, say what did not finish."""
        with second_interrupt_exits_at_once():
            context.engine.cancel(context.tracker)
            flow_run = context.flow_run
            unfinished = [run for run in flow_run.task_runs if not run.state.is_final() or run.state.is_cancelled()]
            flow_run.state = Cancelled(f"Flow run was interrupted; {len(unfinished)} task run(s) did not finish.")
            flow_run.end_time = time.time()
            FLOW_LOGGER.error(f"Flow run '{flow_run.name}' - Interrupted: {len(unfinished)} of "
                              f"{len(flow_run.task_runs)} task runs did not finish; workers stopped")
            self._call_hooks(flow_run, flow_run.state)
            context.observer.flow_finished(flow_run)
            _close(context)

    def _make_runner(self) -> Runner:
        runner = self.task_runner
        if runner is None:
            return ProcessPoolTaskRunner()
        return runner() if isinstance(runner, type) else runner

    def _run_name(self, parameters: dict[str, Any]) -> str:
        template = self.flow_run_name
        if template is None:
            return f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"
        if callable(template):  # Prefect's way: it reads the run from procflow.runtime.flow_run
            return call_naming(naming_flow_run, FlowRunInfo(None, self.name, dict(parameters)), template)
        return options.render_name(f"flow {self.name!r}", "flow_run_name", template, parameters)


def final_state(value: Any, error: BaseException | None, runs: list[TaskRun], timed_out: bool = False) -> State:
    """Prefect 2's rule for a flow run's final state (see the module docstring)."""
    if error is not None:
        if timed_out:
            return Failed(error, message=str(error), name="TimedOut")  # Prefect's message
        return Failed(error, message=f"Flow run encountered an exception: {describe_error(error)}")
    if isinstance(value, State) and value.holder is None and not any(value is run.state for run in runs):
        return value  # a state the flow made itself is its final state, as in Prefect
    if value is None:  # Prefect 2: every task run of the flow run counts; the call returns None
        states = [run.state for run in runs] or None
        data = states
    else:
        data = _futures_to_states(value)
        states = _returned_states(data)
    if states is None:
        return Completed(None if value is None else data)
    not_completed = [state for state in states if not state.is_completed()]
    if not not_completed:
        return Completed(None if value is None else data, message="All states completed.")
    cancelled = [state for state in not_completed if state.is_cancelled()]
    if cancelled:  # Prefect's precedence: any cancelled run makes the flow run Cancelled
        return Cancelled(f"{len(cancelled)}/{len(states)} states cancelled.", data=data)
    return Failed(data=data, message=f"{len(not_completed)}/{len(states)} states failed.")


def _returned_states(data: Any) -> list[State] | None:
    """The States a flow returned: one, or a collection made only of States; else None (data)."""
    if isinstance(data, State):
        return [data]
    items = data.values() if isinstance(data, dict) else data if isinstance(data, (list, tuple, set)) else None
    if items and all(isinstance(item, State) for item in items):
        return list(items)
    return None


def _futures_to_states(value: Any) -> Any:
    """Futures anywhere in the return value become their States, as in Prefect."""
    return substitute(value, lambda future, _: future.state)


def _resolved_for_a_flow(args: tuple, kwargs: dict, wait_for: Any) -> tuple[tuple, dict]:
    """As Prefect does for a subflow: wait for `wait_for`, and give it the results of the
    futures (and future-read states) in its arguments, not the futures."""
    waits: Found = []
    collect(wait_for, waits)
    for future, _ in waits:
        future.wait()
    found: Found = []
    if collect(args, found) | collect(kwargs, found):
        for future, _ in found:
            future.wait()
        return substitute(args), substitute(kwargs)
    return args, kwargs


def _close(context: FlowContext) -> None:
    context.engine.close_flow(context.tracker)
    if context.owns_engine:
        context.engine.stop()


def _timeout_message(seconds: float | None) -> str:
    return f"Flow run exceeded timeout of {seconds} second(s)"


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[threading.Event]:
    """Raise FlowTimedOut in this thread after `seconds`: by SIGALRM in the main thread (it
    interrupts a blocking call such as sleep), else at the thread's next bytecode. The event
    it yields is set when it fires: a FlowTimedOut without it is a nested flow's, raised on."""
    message = _timeout_message(seconds)
    fired = threading.Event()
    if threading.current_thread() is threading.main_thread() and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
        def on_alarm(signum: int, frame: Any) -> None:
            fired.set()
            raise FlowTimedOut(message)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield fired
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return

    def on_timer(thread_id: int) -> None:
        fired.set()
        interrupt_thread(thread_id, FlowTimedOut)

    timer = threading.Timer(seconds, on_timer, (threading.get_ident(),))
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


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


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(*, name: str | None = None, task_runner: Runner | type | None = None, log_prints: bool | None = None,
         flow_run_name: str | Callable[[], str] | None = None, timeout_seconds: float | None = None,
         retries: int = 0, retry_delay_seconds: float = 0, description: str | None = None,
         version: str | None = None, **prefect_options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """`@flow` or `@flow(task_runner=..., log_prints=True, ...)`."""
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)


# Flow run names: two random words, as in Prefect; ~17 000 pairs, so names repeat far less often than with a few hundred
_ADJECTIVES = ("amber", "agile", "ancient", "arctic", "azure", "bold", "brave", "breezy", "bright", "brisk",
               "calm", "candid", "cheerful", "clever", "cobalt", "cosmic", "crimson", "curious", "dapper",
               "daring", "dashing", "dazzling", "eager", "earnest", "electric", "elegant", "emerald", "fancy",
               "fearless", "festive", "fierce", "frosty", "gentle", "giddy", "glossy", "golden", "graceful",
               "grand", "happy", "hardy", "hidden", "honest", "humble", "icy", "jolly", "jovial", "keen",
               "kind", "lively", "loyal", "lucky", "lunar", "magic", "mellow", "merry", "mighty", "misty",
               "modest", "neat", "nimble", "noble", "olive", "orange", "polite", "proud", "quick", "quiet",
               "radiant", "rapid", "rosy", "royal", "rustic", "scarlet", "serene", "shiny", "silent", "silver",
               "smart", "snowy", "solar", "spry", "steady", "stellar", "sturdy", "sunny", "swift", "tidy",
               "tranquil", "true", "upbeat", "vagabond", "valiant", "velvet", "vivid", "warm", "whimsical",
               "wild", "witty", "wondrous", "zany", "zealous", "zesty")
_ANIMALS = ("aardvark", "albatross", "alpaca", "antelope", "armadillo", "badger", "barracuda", "bat", "beaver",
            "bison", "bobcat", "buffalo", "butterfly", "camel", "capybara", "caribou", "cat", "chameleon",
            "cheetah", "chipmunk", "cobra", "condor", "corgi", "cougar", "coyote", "crab", "crane", "cricket",
            "crow", "deer", "dingo", "dodo", "dolphin", "donkey", "dove", "dragon", "duck", "eagle", "eel",
            "elephant", "elk", "emu", "falcon", "ferret", "finch", "flamingo", "fox", "frog", "gazelle",
            "gecko", "gerbil", "giraffe", "goat", "goose", "gopher", "gorilla", "grouse", "hamster", "hare",
            "hawk", "hedgehog", "heron", "hippo", "hornet", "horse", "hound", "hyena", "ibex", "ibis",
            "iguana", "impala", "jackal", "jaguar", "jellyfish", "kangaroo", "kestrel", "kingfisher", "kiwi",
            "koala", "lemming", "lemur", "leopard", "lion", "lizard", "llama", "lobster", "lynx", "macaw",
            "magpie", "manatee", "marmot", "meerkat", "mink", "mole", "mongoose", "moose", "narwhal", "newt",
            "ocelot", "octopus", "okapi", "orca", "oriole", "osprey", "ostrich", "otter", "owl", "oyster",
            "panda", "panther", "parrot", "peacock", "pelican", "penguin", "pheasant", "pigeon", "platypus",
            "porcupine", "possum", "puffin", "puma", "python", "quail", "quokka", "rabbit", "raccoon", "ram",
            "raven", "reindeer", "rhino", "robin", "salamander", "salmon", "seahorse", "seal", "shark",
            "sheep", "skunk", "sloth", "snail", "sparrow", "spider", "squid", "squirrel", "starfish",
            "stingray", "stork", "swan", "tapir", "tarsier", "tiger", "toad", "tortoise", "toucan", "trout",
            "turkey", "turtle", "urchin", "viper", "vole", "vulture", "walrus", "wasp", "weasel", "whale",
            "wolf", "wombat", "woodpecker", "yak", "zebra")
