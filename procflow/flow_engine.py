"""Prefect's engine entry points for one flow run (`prefect.flow_engine`): `run_flow_sync(flow,
parameters=...)`, `run_flow_async`, and `run_flow`, which gives a coroutine for an `async def`
flow. Each is the flow's call; Prefect's `flow_run` argument is accepted and not used (no
server made that run beforehand)."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from .utilities.callables import parameters_to_args_kwargs

__all__ = ["run_flow", "run_flow_async", "run_flow_sync", "run_generator_flow_async", "run_generator_flow_sync"]


def run_flow_sync(flow: Any, flow_run: Any = None, parameters: dict[str, Any] | None = None,
                  wait_for: Any = None, return_type: Literal["state", "result"] = "result") -> Any:
    """The flow's result (or, with `return_type="state"`, its final State)."""
    args, kwargs = parameters_to_args_kwargs(flow, parameters or {})
    return flow(*args, wait_for=wait_for, return_state=return_type == "state", **kwargs)


async def run_flow_async(flow: Any, flow_run: Any = None, parameters: dict[str, Any] | None = None,
                         wait_for: Any = None, return_type: Literal["state", "result"] = "result") -> Any:
    outcome = run_flow_sync(flow, parameters=parameters, wait_for=wait_for, return_type=return_type)
    return await outcome if inspect.isawaitable(outcome) else outcome


def run_flow(flow: Any, flow_run: Any = None, parameters: dict[str, Any] | None = None, wait_for: Any = None,
             return_type: Literal["state", "result"] = "result", **_runtime: Any) -> Any:
    """As Prefect's: a coroutine for an `async def` flow, a generator for a generator flow
    (`flow_generators.py`), else the result at once."""
    if inspect.iscoroutinefunction(getattr(flow, "fn", flow)):
        return run_flow_async(flow, parameters=parameters, wait_for=wait_for, return_type=return_type)
    return run_flow_sync(flow, parameters=parameters, wait_for=wait_for, return_type=return_type)


def run_generator_flow_sync(flow: Any, flow_run: Any = None, parameters: dict[str, Any] | None = None,
                            wait_for: Any = None, return_type: Literal["state", "result"] = "result") -> Any:
    """A generator flow's call: the generator (an async one for an `async def` flow)."""
    return run_flow_sync(flow, parameters=parameters, wait_for=wait_for, return_type=return_type)


run_generator_flow_async = run_generator_flow_sync
