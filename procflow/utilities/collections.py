"""Prefect's import path `prefect.utilities.collections`: `quote` (also in `utilities.annotations`)."""

from ..annotations import quote

__all__ = ["quote"]
