"""Checks of `@task` / `@flow` options when the decorator runs.

A bad value found only when a run fails (`retries="2"` compared with an attempt count)
would surface deep inside the engine, after work was done; here it is a clear error that
names the task or flow, the option and the value, before anything runs.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import threading
import warnings
from typing import Any

from .exceptions import InvalidNameError, ReservedArgumentError

RESERVED_ARGUMENTS = ("return_state", "wait_for")  # the calls' own keywords


def no_reserved_arguments(owner: str, signature: inspect.Signature) -> None:
    """A parameter named like a call keyword could never be passed: refuse it up front, as Prefect does."""
    for name in RESERVED_ARGUMENTS:
        if name in signature.parameters:
            raise ReservedArgumentError(f"{owner}: {name!r} is a reserved argument name and cannot be used.")


def whole(owner: str, option: str, value: Any, minimum: int = 0) -> int:
    """A count of at least `minimum` (`retries`, `max_workers`); None, as Prefect allows, is 0."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{option} must be a whole number of at least {minimum}, got {value!r}")
    return value


def seconds(owner: str, option: str, value: Any) -> Any:
    """A duration: a number of at least 0, finite or `inf`; None passes. Issue 19: a wait
    above `threading.TIMEOUT_MAX` raised OverflowError in the engine thread and the flow
    hung, so longer durations are held at that bound (~292 years: no limit in practice)."""
    if value is None:
        return value
    where = f"{owner}: " if owner else ""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{where}{option} must be a number of seconds, got {type(value).__name__} {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{where}{option} must be a number of seconds of at least 0, got {value!r}")
    return min(value, threading.TIMEOUT_MAX)


def timeout(owner: str, option: str, value: Any) -> float | None:
    """`timeout_seconds`: None, 0 (Prefect: no timeout) and `inf` all mean no limit."""
    limit = seconds(owner, option, value)
    return None if limit is None or limit == 0 or limit >= threading.TIMEOUT_MAX else limit


MAX_RETRY_DELAYS = 50  # Prefect's bound on a list of retry delays


def delays(owner: str, option: str, value: Any) -> Any:
    """`retry_delay_seconds`: a number of seconds, or a list of them (one per retry, at most 50)."""
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_RETRY_DELAYS:
            raise ValueError(f"{owner}: Can not configure more than {MAX_RETRY_DELAYS} retry delays per task "
                             f"({option} has {len(value)}).")
        return [seconds(owner, option, item) for item in value]
    if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
        raise TypeError(f"{owner}: Invalid {option}: a number of seconds or a list of them, got "
                        f"{type(value).__name__} {value!r}")
    return seconds(owner, option, value if value is not None else 0)


def jitter(owner: str, value: Any) -> float | None:
    """`retry_jitter_factor`: None, or a number of at least 0 (how far a retry delay may stray, as a fraction)."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
        raise TypeError(f"{owner}: retry_jitter_factor must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"{owner}: `retry_jitter_factor` must be >= 0.")
    return float(value)


def unwrap_method(fn: Any) -> tuple[Any, str | None]:
    """`@task` / `@flow` over a `@classmethod` or `@staticmethod`, as Prefect allows: the
    function inside, and which kind it was ("class", "static" or None)."""
    if isinstance(fn, classmethod):
        return fn.__func__, "class"
    if isinstance(fn, staticmethod):
        return fn.__func__, "static"
    return fn, None


def bound_target(kind: str | None, instance: Any, owner: Any) -> Any:
    """What a task or flow defined in a class is bound to when looked up: the instance for a
    plain method, the class for a classmethod, nothing (None) for a staticmethod or on the class."""
    if kind == "static":
        return None
    if kind == "class":
        return owner if owner is not None else type(instance)
    return instance


def text_or_callable(owner: str, option: str, value: Any) -> Any:
    """A run-name template: None, a string, or a function returning the name."""
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TypeError(f"{owner}: Expected string or callable for '{option}'; got {type(value).__name__} instead.")
    return value


def function(owner: str, option: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{owner}: {option} must be a function, got {type(value).__name__}")
    return value


def name(kind: str, value: Any) -> Any:
    """A task's or flow's `name=`: None (the function's) or a non-empty string (Prefect's text)."""
    if value is not None and not isinstance(value, str):
        hint = f" Perhaps you meant to call it? e.g. '@{kind}(name=get_{kind}_run_name())'" if callable(value) else ""
        raise TypeError(f"Expected string for {kind} parameter 'name'; got {type(value).__name__} instead.{hint}")
    if value == "":
        raise TypeError(f"@{kind}: name must be a non-empty string")
    return value


_BANNED_IN_FLOW_NAMES = ["/", "%", "&", ">", "<"]


def flow_name(value: str) -> str:
    """Prefect refuses these characters in a flow's name."""
    if any(character in value for character in _BANNED_IN_FLOW_NAMES):
        raise InvalidNameError(f"Name {value!r} contains an invalid character. "
                               f"Must not contain any of: {_BANNED_IN_FLOW_NAMES}.")
    return value


def environment(owner: str, option: str, value: Any) -> dict[str, str] | None:
    """`worker_env`: None or a dict of strings to strings (what a process environment holds)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"{owner}: {option} must be a dict of strings, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{owner}: {option} must map strings to strings, got {key!r}: {item!r} "
                            f"({type(item).__name__}); write {key!r}: {str(item)!r}")
    return dict(value)


def strict_flag(owner: str, option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {option} must be True or False, got {value!r}")
    return value


def flag(owner: str, option: str, value: Any) -> Any:
    """`log_prints`: True, False or None (inherit)."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{owner}: {option} must be True or False, got {value!r}")
    return value


def tags(owner: str, value: Any) -> set[str]:
    """A task's tags: a set of its own, as Prefect's (`my_task.tags.add(...)` changes that task only)."""
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
    """None, or a task runner: an instance, or a class, called with no arguments now (as Prefect
    does: `flow.task_runner` is an instance; each flow run gets its own session of it)."""
    if value is None or all(hasattr(value, attribute) for attribute in ("start", "name", "depth_first")):
        return value() if isinstance(value, type) else value
    raise TypeError(f"{owner}: task_runner must be a task runner from procflow.task_runners or procflow.dask "
                    f"(an instance or the class), got {value!r}")


# Prefect options procflow has no use for. Kept: words about the task or flow. Without effect:
# accepted with one warning, so Prefect code runs unchanged. Refused (none now): ignoring them
# would change what the code does, so the error says so instead.
KEPT = ("description", "version")
WITHOUT_EFFECT = {
    "result_serializer": "results are pickled (protocol 5), in shared memory and in the result store",
    "cache_result_in_memory": "a result stays where it was made (memory, shared memory, the store) while held",
    "viz_return_value": "the flow run graph is built from the runs themselves",
    "asset_deps": "assets live in Prefect's server",
}
REFUSED: dict[str, str] = {}
_warned: set[str] = set()


def _user_frame() -> int:
    """The stack level of the first caller outside procflow: where the decorator was written."""
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("procflow."):
        frame, level = frame.f_back, level + 1
    return level


def prefect_extras(owner: str, extras: dict[str, Any]) -> dict[str, Any]:
    """The options of `extras` to keep (`description`, `version`); warns once about each one
    without effect; raises for an unknown one or one whose effect procflow lacks."""
    for option, value in extras.items():
        if option in REFUSED and value is not None:
            raise TypeError(f"{owner}: procflow does not support Prefect's {option}=: {REFUSED[option]}")
        if option in WITHOUT_EFFECT:
            if option not in _warned and value is not None:
                _warned.add(option)
                warnings.warn(f"{owner}: {option}= has no effect in procflow: {WITHOUT_EFFECT[option]}",
                              stacklevel=_user_frame())
        elif option not in KEPT and option not in REFUSED:
            raise TypeError(f"{owner}: unknown option {option}=")
    return {option: extras.get(option) for option in KEPT}
