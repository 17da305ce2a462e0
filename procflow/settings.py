"""Prefect's `prefect.settings`, for the settings procflow acts on.

A setting's value comes from `temporary_settings(...)` when one is open, else from the
environment (`PREFECT_LOGGING_LOG_PRINTS=true`, or the same name with `PROCFLOW_` in
front of the rest, which wins when both are set; then an older name Prefect still reads),
else its default. Tasks and flows read the retry settings when they
are made, and a flow reads `PREFECT_LOGGING_LOG_PRINTS` when it runs, as Prefect does.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping


def _boolean(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _path(text: Any) -> Path | None:
    return None if text is None or text == "" else Path(text).expanduser()


class Setting:
    def __init__(self, name: str, default: Any, convert: Callable[[Any], Any], older: Setting | None = None) -> None:
        self.name, self.default, self._convert, self.older = name, default, convert, older

    def value(self) -> Any:
        overrides = _overrides.get()
        if self in overrides:
            return overrides[self]
        if self.older is not None and self.older in overrides:
            return overrides[self.older]
        variables = ["PROCFLOW_" + self.name.removeprefix("PREFECT_"), self.name]
        if self.older is not None:
            variables.append(self.older.name)
        for variable in variables:
            text = os.environ.get(variable)
            if text is not None:
                try:
                    return self._convert(text)
                except ValueError as error:
                    raise ValueError(f"environment variable {variable}: {error}") from None
        return self.default

    def __repr__(self) -> str:
        return f"Setting({self.name})"


_NONE: dict[Setting, Any] = {}  # never changed: temporary_settings sets a new dict
_overrides: contextvars.ContextVar[dict[Setting, Any]] = contextvars.ContextVar(
    "procflow_settings", default=_NONE)  # noqa: B039


@contextlib.contextmanager
def temporary_settings(updates: Mapping[Setting, Any] | None = None,
                       set_defaults: Mapping[Setting, Any] | None = None,
                       restore_defaults: Any = None) -> Iterator[None]:
    """Within the block, these settings have these values (Prefect's `temporary_settings`);
    `restore_defaults` gives the listed settings their defaults again."""
    values = dict(_overrides.get())
    for setting, value in {**(set_defaults or {}), **(updates or {})}.items():
        values[setting] = setting._convert(value)
    for setting in restore_defaults or ():
        values[setting] = setting.default
    token = _overrides.set(values)
    try:
        yield
    finally:
        _overrides.reset(token)


PREFECT_LOGGING_LOG_PRINTS = Setting("PREFECT_LOGGING_LOG_PRINTS", False, _boolean)
PREFECT_TASK_DEFAULT_RETRIES = Setting("PREFECT_TASK_DEFAULT_RETRIES", 0, int)
PREFECT_TASK_DEFAULT_RETRY_DELAY_SECONDS = Setting("PREFECT_TASK_DEFAULT_RETRY_DELAY_SECONDS", 0, float)
PREFECT_FLOW_DEFAULT_RETRIES = Setting("PREFECT_FLOW_DEFAULT_RETRIES", 0, int)
PREFECT_FLOW_DEFAULT_RETRY_DELAY_SECONDS = Setting("PREFECT_FLOW_DEFAULT_RETRY_DELAY_SECONDS", 0, float)
PREFECT_RESULTS_PERSIST_BY_DEFAULT = Setting("PREFECT_RESULTS_PERSIST_BY_DEFAULT", False, _boolean)
PREFECT_LOCAL_STORAGE_PATH = Setting("PREFECT_LOCAL_STORAGE_PATH", None, _path)
PREFECT_RESULTS_LOCAL_STORAGE_PATH = Setting("PREFECT_RESULTS_LOCAL_STORAGE_PATH", None, _path,
                                             older=PREFECT_LOCAL_STORAGE_PATH)
PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS = Setting("PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS", None, int)
PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS = Setting("PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS", None, int)
PREFECT_TASKS_REFRESH_CACHE = Setting("PREFECT_TASKS_REFRESH_CACHE", False, _boolean)
PREFECT_TASKS_DEFAULT_NO_CACHE = Setting("PREFECT_TASKS_DEFAULT_NO_CACHE", False, _boolean)
PREFECT_TASKS_DISABLE_CACHING = Setting("PREFECT_TASKS_DISABLE_CACHING", False, _boolean)
