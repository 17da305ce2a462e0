"""Checks of `@task` / `@flow` options when the decorator runs.

A bad value found only when a run fails (`retries="2"` compared with an attempt count)
would surface deep inside the engine, after work was done; here it is a clear error that
names the task or flow, the option and the value, before anything runs.
"""

from __future__ import annotations

import numbers
from typing import Any


def whole(owner: str, option: str, value: Any) -> int:
    """A count of at least 0 (`retries`)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{owner}: {option} must be a whole number of at least 0, got {value!r}")
    return value


def seconds(owner: str, option: str, value: Any, positive: bool = False) -> Any:
    """A duration: a number of at least 0 (above 0 when `positive`); None passes."""
    if value is None:
        return value
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0 or (positive and value == 0):
        bound = "above 0" if positive else "of at least 0"
        raise ValueError(f"{owner}: {option} must be a number of seconds {bound}, got {value!r}")
    return value


def delays(owner: str, option: str, value: Any) -> Any:
    """`retry_delay_seconds`: a number of seconds, or a list of them (one per retry)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            seconds(owner, option, item)
        return value
    return seconds(owner, option, value if value is not None else 0)


def text_or_callable(owner: str, option: str, value: Any) -> Any:
    """A run-name template: None, a string, or a function returning the name."""
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TypeError(f"{owner}: {option} must be a string or a function, got {type(value).__name__}")
    return value


def function(owner: str, option: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{owner}: {option} must be a function, got {type(value).__name__}")
    return value


def flag(owner: str, option: str, value: Any) -> Any:
    """`log_prints`: True, False or None (inherit)."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{owner}: {option} must be True or False, got {value!r}")
    return value


def tags(owner: str, value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"{owner}: tags must be a collection of strings, got {value!r}")
    return {str(tag) for tag in value}


def render_name(owner: str, option: str, template: str, parameters: dict[str, Any]) -> str:
    """A run name from its template (`"sq-{x}"`) and the run's parameters."""
    try:
        return template.format(**parameters)
    except (KeyError, IndexError) as error:
        raise ValueError(f"{owner}: {option} {template!r} refers to {error}, which is not one of its parameters "
                         f"{sorted(parameters)}") from None


def task_runner(owner: str, value: Any) -> Any:
    """None, or a task runner: an instance, or a class called with no arguments per flow run."""
    if value is None or all(hasattr(value, method) for method in ("start", "submit", "capacity", "shutdown")):
        return value
    raise TypeError(f"{owner}: task_runner must be a task runner from procflow.task_runners or procflow.dask "
                    f"(an instance or the class), got {value!r}")
