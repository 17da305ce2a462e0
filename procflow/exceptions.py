"""Prefect's import path `prefect.exceptions`, for the errors procflow raises under the same names."""

from .states import (CancelledRun, CrashedRun, FailedRun, MappingLengthMismatch, MappingMissingIterable,
                     MissingContextError, ParameterBindError, ReservedArgumentError, UnfinishedRun, UpstreamTaskError)

__all__ = ["CancelledRun", "CrashedRun", "FailedRun", "MappingLengthMismatch", "MappingMissingIterable",
           "MissingContextError", "ParameterBindError", "ReservedArgumentError", "UnfinishedRun", "UpstreamTaskError"]
