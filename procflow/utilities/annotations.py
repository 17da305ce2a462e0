"""Prefect's import path `prefect.utilities.annotations`: `unmapped`, `allow_failure`, `quote`."""

from ..annotations import allow_failure, quote, unmapped

__all__ = ["allow_failure", "quote", "unmapped"]
