"""A task's or flow's call signature: binding with its one error text, and run-name templates.

`Task` and `Flow` both bind calls the same way (issue 17): a parameter named like a call
keyword is refused when the decorator runs, arguments the function would refuse raise
`ParameterBindError` naming the task or flow and its signature before anything runs, and
the common plain positional call skips `inspect.Signature.bind` (`check`). Run names come
from the same place: a `task_run_name` / `flow_run_name` template (a string rendered with
the call's parameters, or a function reading `procflow.runtime`), else a default.
"""

from __future__ import annotations

import inspect
import string
from typing import Any, Callable

from . import options
from .exceptions import ParameterBindError
from .shapes import Args, Kwargs


class CallSignature:
    """The signature of a task's or flow's function, bound as a call of `kind` ("task", "flow")."""

    __slots__ = ("kind", "signature", "_low", "_high")

    def __init__(self, kind: str, name: str, fn: Callable[..., Any]) -> None:
        self.kind = kind
        self.signature = inspect.signature(fn)
        options.no_reserved_arguments(f"{kind} {name!r}", self.signature)
        self._low, self._high = _positional_range(self.signature)

    def check(self, name: str, args: Args, kwargs: Kwargs) -> None:
        """Reject arguments the function would refuse, before anything runs."""
        if kwargs or not self._low <= len(args) <= self._high:  # the common plain positional call skips bind()
            self.bind(name, args, kwargs)

    def bind(self, name: str, args: Args, kwargs: Kwargs) -> inspect.BoundArguments:
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ParameterBindError(f"{self.kind} {name!r}: {error} (signature: {name}{self.signature})") from None

    def parameters(self, name: str, args: Args, kwargs: Kwargs) -> dict[str, Any]:
        """Every parameter by name, defaults filled in (what templates and cache keys see)."""
        bound = self.bind(name, args, kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


def template_fields(template: str) -> set[str]:
    """The parameters a run-name template names (`"{x.name}-{y[0]}"`: x and y)."""
    fields = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            fields.add(field.split(".", 1)[0].split("[", 1)[0])
    return fields


def _positional_range(signature: inspect.Signature) -> tuple[int, int]:
    """How many positional arguments a call may pass with no keywords (-1, -1: always bind)."""
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return (-1, -1)
    if any(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty for p in parameters):
        return (-1, -1)
    positional = [p for p in parameters
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return (sum(p.default is p.empty for p in positional), len(positional))
