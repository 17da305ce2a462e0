"""Run states: frozen values and their constructors; the errors they raise are in `exceptions.py`.
`states.py` is Prefect's `prefect.states`: these, and how a value or an error becomes one.

Near the bottom: everything else imports it; it imports only `exceptions` and
`asyncdispatch` (which `State.result()` uses to be awaitable in async code). A
`State` holds its result in `data`; a result that lives elsewhere (a shared-memory
segment, a Dask worker) is a `LazyResult` that loads on `.result()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .asyncdispatch import async_dispatch
from .exceptions import CancelledRun, CrashedRun, FailedRun, PausedRun, UnfinishedRun, UpstreamTaskError
from .state_groups import FINAL_TYPES, StateType





class ReturnedState(Exception):
    """A task returned a state that is not `Completed` (`return Failed(message=...)`): its run
    ends in that state, as in Prefect (a `Failed` one after its retries, if it has any).
    Travels as the run's error."""

    def __init__(self, type_value: str, name: str, message: str | None, data: Any = None) -> None:
        super().__init__(type_value, name, message, data)
        self.type_value, self.name, self.message, self.data = type_value, name, message, data

    def state(self) -> State:
        """The state, with its data kept (Prefect's `result(raise_on_failure=False)` gives it);
        without data, the exception of its type (`CancelledRun` for a returned `Cancelled()`)."""
        kind = StateType(self.type_value)
        data = _wrapped_error(kind, self.message or self.name) if self.data is None else self.data
        return State(kind, self.name, self.message, data)


class LazyResult:
    """A result stored outside the parent; `load()` brings it in (once)."""

    __slots__ = ()

    def load(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def holds_storage(self) -> bool:
        """True when something (a segment, a remote worker) keeps it until released."""
        return False

    @property
    def nbytes(self) -> int:
        """Its size as stored, when known (0 when not): for the run records and the report."""
        return 0

    def reference(self) -> tuple[Any, ...] | None:
        """How it pickles as a call argument without the parent loading it: a `__reduce__`
        pair that loads it where it is unpickled (a worker); None: pass its value."""
        return None


@dataclass(frozen=True, slots=True)
class StateDetails:
    """Which run a state belongs to (Prefect's `state.state_details`): set on the states of flow
    runs (`flow_run_id`) so that a subflow's state, returned by a flow, counts as a run's state."""

    flow_run_id: Any = None
    task_run_id: Any = None
    child_flow_run_id: Any = None
    retriable: bool | None = None
    cache_key: str | None = None

    def __bool__(self) -> bool:
        return self.flow_run_id is not None or self.task_run_id is not None


NO_DETAILS = StateDetails()  # shared: a state made without details costs no allocation


@dataclass(frozen=True, slots=True, eq=False)
class State:
    """A run's state. As in Prefect, `State(type=StateType.CANCELLED)` is enough: the name
    comes from the type ("Cancelled") and the message is optional."""

    type: StateType
    name: str | None = None  # always a str after __post_init__
    message: str | None = None
    data: Any = None
    # The future this state was read from (`TaskFuture.state`): while the user holds the
    # state, its stored result stays readable, and as an argument it is that upstream.
    holder: Any = field(default=None, repr=False)
    state_details: StateDetails = field(default=NO_DETAILS, repr=False)  # a dict is accepted, as in Prefect

    def __post_init__(self) -> None:
        if not isinstance(self.type, StateType):
            object.__setattr__(self, "type", StateType(self.type))
        if self.name is None:
            object.__setattr__(self, "name", self.type.value.capitalize())
        details: Any = self.state_details
        if type(details) is not StateDetails:
            object.__setattr__(self, "state_details", StateDetails(**(details or {})))

    def __reduce__(self) -> tuple[Any, ...]:
        if self.state_details is NO_DETAILS:
            return (State, (self.type, self.name, self.message, self.data))
        return (State, (self.type, self.name, self.message, self.data, None, self.state_details))

    def of_flow_run(self, flow_run_id: Any) -> State:
        """This state as the final state of flow run `flow_run_id` (Prefect's API gives it back so)."""
        if self.state_details.flow_run_id == flow_run_id:
            return self
        details = dataclasses.replace(self.state_details, flow_run_id=flow_run_id)
        return dataclasses.replace(self, state_details=details)

    async def aresult(self, raise_on_failure: bool = True, retry_result_failure: bool = True) -> Any:
        """`result()` to await, in async code (Prefect's `aresult`)."""
        return self._result(raise_on_failure)

    @async_dispatch(aresult)
    def result(self, raise_on_failure: bool = True, retry_result_failure: bool = True) -> Any:
        """The run's value; awaitable in async code (`asyncdispatch.py`), as in Prefect 3."""
        return self._result(raise_on_failure)

    def _result(self, raise_on_failure: bool = True) -> Any:
        """Prefect's rules: a completed state's value; a paused one raises `PausedRun`, one not
        final `UnfinishedRun` (a `NotReady` run: its `UpstreamTaskError`); a failed, crashed or
        cancelled one raises its exception (`get_state_exception`; among states a flow
        returned, the first that did not complete), or, with `raise_on_failure=False`,
        returns its data (its exception when it has none)."""
        data = self.data
        if self.type is StateType.COMPLETED:
            return data.load() if isinstance(data, LazyResult) else data
        if self.type is StateType.PAUSED:
            raise PausedRun("Run is paused, its result is not available.")
        if not self.is_final():
            if not isinstance(data, BaseException):
                raise UnfinishedRun(f"Run is in {self.type.value} state, its result is not available.")
            if raise_on_failure:
                raise data
            return data
        if not raise_on_failure:
            if isinstance(data, LazyResult):  # a record of a result store: what it holds
                return data.load()
            return data if data is not None else _get_state_exception(self)
        if isinstance(data, State) or _is_state_collection(data):
            raise _first_failure(data) or _wrapped_error(self.type, self.message)
        raise _get_state_exception(self)

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    def __repr__(self) -> str:
        """As Prefect logs a state: `Completed()`, `Failed('why')`, `Cached(type=COMPLETED)`."""
        shown = [repr(self.message)] if self.message else []
        if self.name != self.type.value.capitalize():
            shown.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(shown)})"

    __str__ = __repr__


def _is_state_collection(data: Any) -> bool:
    """A non-empty list, tuple or set made only of States, or a dict whose values are."""
    items = data.values() if isinstance(data, dict) else data if isinstance(data, (list, tuple, set)) else None
    return bool(items) and all(isinstance(item, State) for item in items)  # type: ignore[union-attr]


def _first_failure(data: Any) -> BaseException | None:
    """The error of the first state in `data` that did not complete (Prefect's rule)."""
    states = [data] if isinstance(data, State) else list(data.values() if isinstance(data, dict) else data)
    for state in states:
        if not state.is_completed():
            return state._result(raise_on_failure=False)  # type: ignore[no-any-return]
    return None


def Pending(message: str | None = None, name: str = "Pending", data: Any = None,
            state_details: Any = NO_DETAILS) -> State:
    return State(StateType.PENDING, name, message, data, None, state_details)


def Running(message: str | None = None, name: str = "Running", data: Any = None,
            state_details: Any = NO_DETAILS) -> State:
    return State(StateType.RUNNING, name, message, data, None, state_details)


def Completed(data: Any = None, message: str | None = None, name: str = "Completed",
              state_details: Any = NO_DETAILS) -> State:
    return State(StateType.COMPLETED, name, message, data, None, state_details)


def Failed(error: BaseException | None = None, message: str | None = None, name: str = "Failed",
           data: Any = None, state_details: Any = NO_DETAILS) -> State:
    """`Failed(error)`, or Prefect's keywords: `Failed(message=...)`, `Failed(data=...)`."""
    data = error if data is None else data
    if message is None and isinstance(data, BaseException):
        message = f"Task run encountered an exception {describe_error(data)}"
    return State(StateType.FAILED, name, message, data, None, state_details)


def Crashed(message: str | None = None, error: BaseException | None = None, name: str = "Crashed",
            data: Any = None, state_details: Any = NO_DETAILS) -> State:
    data = error if data is None else data
    return State(StateType.CRASHED, name, message, data, None, state_details)


def Cancelled(message: str | None = None, name: str = "Cancelled", data: Any = None,
              state_details: Any = NO_DETAILS) -> State:
    return State(StateType.CANCELLED, name, message, data, None, state_details)


def _made(kind: StateType, default_name: str) -> Any:
    """A constructor of one of Prefect's other states; their times and options are accepted
    and not kept (nothing here schedules, pauses or suspends a run)."""
    def make(message: str | None = None, name: str | None = None, data: Any = None,
             state_details: Any = NO_DETAILS, **_options: Any) -> State:
        return State(kind, name or default_name, message, data, None, state_details)

    make.__name__ = make.__qualname__ = default_name
    make.__doc__ = f"Prefect's `{default_name}` state ({kind.value})."
    return make


Scheduled = _made(StateType.SCHEDULED, "Scheduled")
Late = _made(StateType.SCHEDULED, "Late")
AwaitingRetry = _made(StateType.SCHEDULED, "AwaitingRetry")
AwaitingConcurrencySlot = _made(StateType.SCHEDULED, "AwaitingConcurrencySlot")
Paused = _made(StateType.PAUSED, "Paused")
Suspended = _made(StateType.PAUSED, "Suspended")
Cancelling = _made(StateType.CANCELLING, "Cancelling")
Submitting = _made(StateType.PENDING, "Submitting")
InfrastructurePending = _made(StateType.PENDING, "InfrastructurePending")
Retrying = _made(StateType.RUNNING, "Retrying")


def NotReady(upstream_name: str, cause: BaseException | None) -> State:
    """The state of a run whose upstream did not complete; it never ran."""
    message = f"Upstream task run '{upstream_name}' did not reach a 'COMPLETED' state."
    detail = f" It ended with {describe_error(cause)}" if cause is not None else ""
    error = UpstreamTaskError(message + detail)
    error.__cause__ = cause
    return State(StateType.PENDING, "NotReady", message, error)


def run_timeout_error(run_name: str, seconds: float | None, worker_replaced: bool = False) -> TimeoutError:
    """What a run that went past `timeout_seconds` raises, on every runner and in a direct call."""
    return TimeoutError(f"Task run '{run_name}' exceeded timeout_seconds={seconds}: timed out after {seconds} second(s)"
                        + ("; its worker did not stop and was replaced" if worker_replaced else ""))


def TimedOut(error: BaseException, seconds: float | None) -> State:  # noqa: N802 - a state, like Failed
    """Failed, named and worded as Prefect's timed-out run."""
    return Failed(error, message=f"Task run exceeded timeout of {seconds} second(s)", name="TimedOut")


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def is_terminal(state: State) -> bool:
    """The run will not change any more: final, or `NotReady` (it will never run)."""
    return state.type in FINAL_TYPES or state.name == "NotReady"


# The exception standing for a failed, crashed or cancelled state without one of its own.
_WRAPPERS: dict[StateType, tuple[type[Exception], str]] = {
    StateType.FAILED: (FailedRun, "Run failed."), StateType.CRASHED: (CrashedRun, "Run crashed."),
    StateType.CANCELLED: (CancelledRun, "Run cancelled.")}


def _wrapped_error(kind: StateType, message: str | None) -> Exception:
    wrapper, default_message = _WRAPPERS.get(kind, (FailedRun, "Run failed."))
    return wrapper(message or default_message)


def is_state_iterable(value: Any) -> bool:
    """A non-empty list, tuple or set made only of States (Prefect's test; not a dict)."""
    return isinstance(value, (list, tuple, set)) and bool(value) and all(isinstance(item, State) for item in value)


def _get_state_exception(state: State) -> BaseException:
    """Prefect's rules: the state's error; a nested state's, or the first failed one's among
    states; a wrapper (`FailedRun`, `CrashedRun`, `CancelledRun`) around a text or the
    state's message; `ValueError` for a state that did not fail, `TypeError` for other data."""
    if state.type not in _WRAPPERS:
        raise ValueError(f"Expected failed or crashed state got {state!r}.")
    data = state.data.load() if isinstance(state.data, LazyResult) else state.data
    if data is None:
        return _wrapped_error(state.type, state.message)
    if isinstance(data, BaseException):
        return data
    if isinstance(data, str):
        return _wrapped_error(state.type, data)
    if isinstance(data, State):
        return _get_state_exception(data)
    if is_state_iterable(data):
        for inner in data:
            if inner.is_failed() or inner.is_crashed() or inner.is_cancelled():
                return _get_state_exception(inner)
        raise ValueError("Failed state result was an iterable of states but none were failed.")
    raise TypeError(f"Unexpected result for failed state: {data!r} —— "
                    f"{type(data).__name__} cannot be resolved into an exception")


async def aget_state_exception(state: State) -> BaseException:
    return _get_state_exception(state)


@async_dispatch(aget_state_exception)
def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (Prefect's rules)."""
    return _get_state_exception(state)


def _raise_state_exception(state: State) -> None:
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        raise _get_state_exception(state)


async def araise_state_exception(state: State) -> None:
    _raise_state_exception(state)


@async_dispatch(araise_state_exception)
def raise_state_exception(state: State) -> None:
    """Prefect's: raise the exception of a failed, crashed or cancelled state; else return None."""
    _raise_state_exception(state)
