"""`cache_key_fn` within a flow run: the key of a run, for submitted runs and direct calls alike."""

from __future__ import annotations

import types
from typing import Any

from .records import FlowRun, TaskRun
from .runlog import TASK_LOGGER


def cache_key(task: Any, run: TaskRun, flow_run: FlowRun, parameters: dict[str, Any]) -> str | None:
    """The run's key, or None: no caching for it. A key function that raises is logged with the
    run, as Prefect does, and the run goes on without the cache."""
    context = types.SimpleNamespace(task=task, task_run=run, parameters=parameters, flow_run=flow_run)
    try:
        key = task.cache_key_fn(context, parameters)
        hash(key)
    except Exception as error:  # noqa: BLE001 - as Prefect: say so, and run without the cache
        TASK_LOGGER.error(f"Task run '{run.name}' - Error encountered when computing cache key with "
                          f"{getattr(task.cache_key_fn, '__name__', 'cache_key_fn')}() - the run will not "
                          f"use or fill the cache: {type(error).__name__}: {error}")
        return None
    return key  # type: ignore[no-any-return]
