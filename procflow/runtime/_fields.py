"""How `procflow.runtime`'s modules answer an attribute, as Prefect's do.

Each module has `FIELDS`, a name -> function table read at access (a test may replace an
entry). An environment variable `PREFECT__RUNTIME__<MODULE>__<NAME>` (or `PROCFLOW__...`)
overrides the value, cast to the type of the real one (bool, int, float, str, datetime;
a None value takes the string); a list or a dict cannot be overridden that way. A name in
neither is an `AttributeError`.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable

Fields = dict[str, Callable[[], Any]]


def _utc(text: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(text)
    return parsed.replace(tzinfo=datetime.timezone.utc) if parsed.tzinfo is None else \
        parsed.astimezone(datetime.timezone.utc)


_CASTS: dict[type, Callable[[str], Any]] = {
    bool: lambda text: text.lower() == "true", int: int, float: float, str: str,
    datetime.datetime: _utc, type(None): str,
}


def override(section: str, name: str) -> str | None:
    """The environment's value for attribute `name` of `section` ("FLOW_RUN"), if any."""
    for prefix in ("PROCFLOW", "PREFECT"):
        value = os.environ.get(f"{prefix}__RUNTIME__{section}__{name.upper()}")
        if value is not None:
            return value
    return None


def attribute(module: str, section: str, fields: Fields, name: str) -> Any:
    """Attribute `name` of runtime module `module`: its field's value, or the environment's."""
    getter = fields.get(name)
    mocked = override(section, name)
    if getter is None:
        if mocked is not None:
            return mocked
        raise AttributeError(f"{module} has no attribute {name!r}")
    value = getter()
    if mocked is None:
        return value
    cast = _CASTS.get(type(value))
    if cast is None:
        raise ValueError("This runtime context attribute cannot be mocked using an environment variable. "
                         "Please use monkeypatch instead.")
    return cast(mocked)
