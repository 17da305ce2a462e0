"""The task run in progress (Prefect's `prefect.runtime.task_run`): attributes read at access."""

from __future__ import annotations

from typing import Any

from ..current import current_task_run

__all__ = ["id", "name", "parameters", "run_count", "tags", "task_name"]  # noqa: F822 - read at access, by __getattr__


def __getattr__(attribute: str) -> Any:
    run = current_task_run.get()
    if attribute == "id":
        return None if run is None or run.id is None else str(run.id)
    if attribute == "name":
        return None if run is None else run.name
    if attribute == "task_name":
        return None if run is None else run.task_name
    if attribute == "parameters":
        return {} if run is None else run.parameters()
    if attribute == "tags":  # the task's and those of `with tags(...)` where the run was made
        return [] if run is None else list(run.tags)
    if attribute == "run_count":  # 1 on the first attempt; 0 outside a task run, as in Prefect
        return 0 if run is None or run.id is None else run.run_count
    raise AttributeError(f"{__name__} has no attribute {attribute!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
