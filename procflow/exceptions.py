"""Prefect's import path `prefect.exceptions`, for the errors procflow raises under the same names."""

from .states import (CancelledRun, CrashedRun, FailedRun, InvalidNameError, MappingLengthMismatch,
                     MappingMissingIterable, MissingContextError, MissingResult, ParameterBindError, ParameterTypeError,
                     PausedRun,
                     ReservedArgumentError, UnfinishedRun, UpstreamTaskError)

__all__ = ["CancelledRun", "CrashedRun", "FailedRun", "InvalidNameError", "MappingLengthMismatch",
           "MappingMissingIterable", "MissingContextError", "MissingResult", "ParameterBindError",
           "ParameterTypeError", "PausedRun",
           "ReservedArgumentError", "UnfinishedRun", "UpstreamTaskError"]
