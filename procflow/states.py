"""Prefect's `prefect.states`: the states and their constructors (`state_values.py`), and how a
value or an error becomes one (`state_conversions.py`)."""

from .exceptions import (CancelledRun, CrashedRun, FailedRun, MissingContextError, MissingResult, PausedRun,
                         TerminationSignal, UnfinishedRun, UpstreamTaskError)
from .state_conversions import (exception_to_crashed_state, exception_to_failed_state, format_exception,
                                return_value_to_state)
from .state_groups import FINAL_TYPES, StateGroup, StateType
from .state_values import (NO_DETAILS, AwaitingConcurrencySlot, AwaitingRetry, Cancelled, Cancelling, Completed,
                           Crashed, Failed, InfrastructurePending, Late, LazyResult, NotReady, Paused, Pending,
                           ReturnedState, Retrying, Running, Scheduled, State, StateDetails, Submitting, Suspended,
                           TimedOut, aget_state_exception, araise_state_exception, describe_error, get_state_exception,
                           is_state_iterable, is_terminal, raise_state_exception, run_timeout_error)

__all__ = ["CancelledRun", "CrashedRun", "FailedRun", "MissingContextError", "MissingResult", "PausedRun",
           "TerminationSignal", "UnfinishedRun", "UpstreamTaskError", "FINAL_TYPES", "NO_DETAILS",
           "AwaitingConcurrencySlot", "AwaitingRetry", "Cancelled", "Cancelling", "Completed", "Crashed", "Failed",
           "InfrastructurePending", "Late", "LazyResult", "NotReady", "Paused", "Pending", "ReturnedState",
           "Retrying", "Running", "Scheduled", "State", "StateDetails", "StateGroup", "StateType", "Submitting",
           "Suspended", "TimedOut", "aget_state_exception", "araise_state_exception", "describe_error",
           "exception_to_crashed_state", "exception_to_failed_state", "format_exception", "get_state_exception",
           "is_state_iterable", "is_terminal", "raise_state_exception", "return_value_to_state", "run_timeout_error"]
