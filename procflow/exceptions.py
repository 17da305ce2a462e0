"""Prefect's import path `prefect.exceptions`, for the errors procflow raises under the same names."""

from .states import (MappingLengthMismatch, MappingMissingIterable, MissingContextError, ReservedArgumentError,
                     UpstreamTaskError)

__all__ = ["MappingLengthMismatch", "MappingMissingIterable", "MissingContextError", "ReservedArgumentError",
           "UpstreamTaskError"]
