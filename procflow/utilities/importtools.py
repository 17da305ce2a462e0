"""Prefect's `prefect.utilities.importtools`: loading objects by import path (`entrypoints.py`)."""

from __future__ import annotations

from ..entrypoints import import_object, load_script
from ..entrypoints import safe_namespace as safe_load_namespace

__all__ = ["import_object", "load_script", "safe_load_namespace"]
