"""Type aliases for a call's arguments, so that signatures that pass them on stay short."""

from __future__ import annotations

from typing import Any, Callable

Args = tuple[Any, ...]  # positional arguments, as a call takes them
Kwargs = dict[str, Any]  # keyword arguments, by parameter name
Hooks = list[Callable[..., Any]]  # state hooks, as `on_failure=` takes them
