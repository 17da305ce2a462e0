"""Prefect's `prefect._internal.states`: the sync twins of the state helpers (`state_conversions.py`)."""

from ..state_conversions import (exception_to_crashed_state_sync, exception_to_failed_state_sync,
                                 return_value_to_state_sync)

__all__ = ["exception_to_crashed_state_sync", "exception_to_failed_state_sync", "return_value_to_state_sync"]
