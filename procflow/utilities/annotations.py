"""Prefect's import path `prefect.utilities.annotations`: `unmapped`, `allow_failure`, `quote`, `opaque`."""

from ..annotations import allow_failure, opaque, quote, unmapped

__all__ = ["allow_failure", "opaque", "quote", "unmapped"]
