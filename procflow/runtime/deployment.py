"""Prefect's `prefect.runtime.deployment`: procflow runs no deployments, so outside a test's
override every attribute is empty (None, `{}`), as Prefect's are in a run without one;
`flow_run_id` is the flow run's. `PREFECT__RUNTIME__DEPLOYMENT__<NAME>` overrides (`_fields.py`)."""

from __future__ import annotations

from typing import Any

from . import flow_run
from ._fields import Fields, attribute

__all__ = ["flow_run_id", "id", "name", "parameters", "version"]  # noqa: F822


def _none() -> None:
    return None


def _no_parameters() -> dict[str, Any]:
    return {}


FIELDS: Fields = {"id": _none, "flow_run_id": flow_run.get_id, "name": _none, "parameters": _no_parameters,
                  "version": _none}


def __getattr__(name: str) -> Any:
    return attribute(__name__, "DEPLOYMENT", FIELDS, name)


def __dir__() -> list[str]:
    return sorted(__all__)
