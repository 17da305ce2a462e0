"""How a value or an error becomes a state, with Prefect 3.8's helpers and words:
`return_value_to_state`, `exception_to_failed_state`, `exception_to_crashed_state` (awaited, in
`prefect.states`) and their `_sync` twins (`prefect._internal.states`).

Code that builds its own states uses them: hooks, tests, custom engines. The result store is
any object with Prefect's `create_result_record(obj, key=..., expiration=...)` and
`persist_result_record(record)` (`procflow.results.ResultStore` has them); with one, the
state's data is the record, and `state.result()` reads the value from it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import traceback
import uuid
from types import GeneratorType, TracebackType
from typing import Any

from .exceptions import TerminationSignal
from .runlog import current_or
from .state_groups import StateGroup, StateType
from .state_values import Completed, Crashed, Failed, LazyResult, State, StateDetails, is_state_iterable

_LOGGER = logging.getLogger("procflow.states")


def format_exception(exc: BaseException, tb: TracebackType | None = None) -> str:
    """`ValueError: text` (with its traceback when given), as Prefect puts it in a message."""
    if tb is not None:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    return f"{type(exc).__name__}: {exc}"


def _recorded(result_store: Any, value: Any, write: bool, key: str | None = None, expiration: Any = None) -> Any:
    """The value as a record of the store (written when asked: a failed write is a warning)."""
    record = result_store.create_result_record(value, key=key, expiration=expiration)
    if write:
        try:
            result_store.persist_result_record(record)
        except Exception as error:  # noqa: BLE001 - as Prefect: the run goes on, its result not written
            current_or(_LOGGER).warning(f"Encountered an error while persisting result: {error} Execution will "
                                        "continue, but the result has not been persisted")
    return record


def _cancelled(exc: BaseException) -> bool:
    """An event loop's cancellation (asyncio's, or trio's through anyio)."""
    return type(exc).__name__ in ("CancelledError", "Cancelled") and not isinstance(exc, Exception)


def exception_to_crashed_state_sync(exc: BaseException, result_store: Any = None) -> State:
    """An error from outside the user's code (an interrupt, a signal, an exit) as a `Crashed` state."""
    if _cancelled(exc):
        message = "Execution was cancelled by the runtime environment."
    elif isinstance(exc, KeyboardInterrupt):
        message = "Execution was aborted by an interrupt signal."
    elif isinstance(exc, TerminationSignal):
        message = "Execution was aborted by a termination signal."
    elif isinstance(exc, SystemExit):
        message = "Execution was aborted by Python system exit call."
    else:
        message = f"Execution was interrupted by an unexpected exception: {format_exception(exc)}"
    data = result_store.create_result_record(exc, key=uuid.uuid4().hex) if result_store is not None else exc
    return Crashed(message=message, data=data)


def exception_to_failed_state_sync(exc: BaseException | None = None, result_store: Any = None,
                                   write_result: bool = False, **kwargs: Any) -> State:
    """The error (else the one being handled) as a `Failed` state that is not retried."""
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise ValueError("Exception was not passed and no active exception could be found.")
    data = _recorded(result_store, exc, write_result, key=uuid.uuid4().hex) if result_store is not None else exc
    existing = kwargs.pop("message", "") or ""
    if existing and not existing.endswith(" "):
        existing += " "
    given = kwargs.pop("state_details", None)
    details = dataclasses.asdict(given) if isinstance(given, StateDetails) else dict(given or {})
    details["retriable"] = False
    return Failed(data=data, message=existing + format_exception(exc), state_details=details, **kwargs)


def return_value_to_state_sync(retval: Any, result_store: Any, key: str | None = None, expiration: Any = None,
                               write_result: bool = False) -> State:
    """What a run returned as its state, by Prefect's rules:

    - a state made by hand (no run's id in its details) is the state, its data made a record;
    - a run's state, or an iterable of states: all completed gives Completed, any cancelled
      Cancelled, any paused Paused, else Failed, with the states as data;
    - anything else is Completed with it as data (a generator becomes a list)."""
    if isinstance(retval, State) and not retval.state_details:
        if not isinstance(retval.data, LazyResult):  # a record made by hand (or any stored result) stays
            object.__setattr__(retval, "data", _recorded(result_store, retval.data, write_result, key, expiration))
        return retval
    if isinstance(retval, State) or is_state_iterable(retval):
        states = [retval] if isinstance(retval, State) else list(retval)
        kind, message = _aggregate(StateGroup(states))
        return State(kind, message=message, data=_recorded(result_store, retval, write_result, key, expiration))
    data = list(retval) if isinstance(retval, GeneratorType) else retval
    if isinstance(data, LazyResult):
        return Completed(data=data)
    return Completed(data=_recorded(result_store, data, write_result, key, expiration))


def _aggregate(states: StateGroup) -> tuple[StateType, str]:
    """Prefect's type and message for many states (`aggregate.py` is procflow's flow-run rule)."""
    if states.all_completed():
        return StateType.COMPLETED, "All states completed."
    if states.any_cancelled():
        return StateType.CANCELLED, f"{states.cancelled_count}/{states.total_count} states cancelled."
    if states.any_paused():
        return StateType.PAUSED, f"{states.paused_count}/{states.total_count} states paused."
    if states.any_failed():
        return StateType.FAILED, f"{states.fail_count}/{states.total_count} states failed."
    if not states.all_final():
        return StateType.FAILED, f"{states.not_final_count}/{states.total_count} states are not final."
    return StateType.FAILED, "Given states: " + states.counts_message()


async def exception_to_crashed_state(exc: BaseException, result_store: Any = None) -> State:
    return exception_to_crashed_state_sync(exc, result_store)


async def exception_to_failed_state(exc: BaseException | None = None, result_store: Any = None,
                                    write_result: bool = False, **kwargs: Any) -> State:
    if exc is None:
        exc = sys.exc_info()[1]
    return exception_to_failed_state_sync(exc, result_store, write_result, **kwargs)


async def return_value_to_state(retval: Any, result_store: Any, key: str | None = None, expiration: Any = None,
                                write_result: bool = False) -> State:
    return return_value_to_state_sync(retval, result_store, key, expiration, write_result)
