"""Prefect's `prefect.utilities.callables`: a call's arguments by parameter name."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..exceptions import ParameterBindError
from ..shapes import Args, Kwargs


def get_call_parameters(fn: Callable[..., Any], call_args: Args, call_kwargs: dict[str, Any],
                        apply_defaults: bool = True) -> dict[str, Any]:
    """`fn(*call_args, **call_kwargs)`'s arguments by parameter name (defaults included unless
    `apply_defaults=False`), as Prefect's; arguments `fn` would refuse raise `ParameterBindError`."""
    target = getattr(fn, "fn", fn)  # a task or flow: its function
    try:
        bound = inspect.signature(target).bind(*call_args, **call_kwargs)
    except TypeError as error:
        raise ParameterBindError(f"Error binding parameters for function {getattr(target, '__name__', target)!r}: "
                                 f"{error}.\nFunction {getattr(target, '__name__', '')!r} has signature "
                                 f"{inspect.signature(target)!r} but received args: {call_args} and kwargs: "
                                 f"{list(call_kwargs)}.") from None
    if apply_defaults:
        bound.apply_defaults()
    return dict(bound.arguments)


def parameters_to_args_kwargs(fn: Callable[..., Any], parameters: dict[str, Any]) -> tuple[Args, Kwargs]:
    """The call that binds `parameters` (by name, a `*args` one a tuple and a `**kwargs` one a
    dict) to `fn`, as Prefect's: the inverse of `get_call_parameters`."""
    target = getattr(fn, "fn", fn)
    signature = inspect.signature(target)
    unknown = set(parameters) - set(signature.parameters)
    if unknown:
        raise ParameterBindError(f"Function {getattr(target, '__name__', target)!r} has no parameters named "
                                 f"{sorted(unknown)}")
    bound = inspect.BoundArguments(signature, dict(parameters))
    return bound.args, bound.kwargs
