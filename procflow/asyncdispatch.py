"""Prefect 3's "async dispatch": one name that answers plainly in sync code and with an
awaitable in async code, so `await state.result()` works in an `async def` flow while
`state.result()` is unchanged in a sync one.

Async code is: a task run of an `async def` task, else a flow run of an `async def` flow,
else any code with an event loop running in its thread (as in Prefect). `_sync=True` or
`_sync=False` on the call chooses either side (Prefect's keyword); procflow's own code
calls the plain side.
"""

from __future__ import annotations

import functools
import sys
import inspect
from typing import Any, Callable, Coroutine

from .current import current_flow, current_task_run


def in_async_context() -> bool:
    run = current_task_run.get()
    if run is not None:
        return inspect.iscoroutinefunction(run.fn)
    flow_context = current_flow.get()
    if flow_context is not None:
        return bool(flow_context.is_async)
    asyncio = sys.modules.get("asyncio")  # not loaded: no event loop can be running
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def async_dispatch(async_impl: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[[Callable[..., Any]],
                                                                                     Callable[..., Any]]:
    """Decorate the sync implementation; `async_impl` takes the same arguments."""
    def decorate(sync_impl: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(sync_impl)
        def dispatch(*args: Any, _sync: bool | None = None, **kwargs: Any) -> Any:
            run_sync = _sync if _sync is not None else not in_async_context()
            return (sync_impl if run_sync else async_impl)(*args, **kwargs)

        dispatch.aio = async_impl  # type: ignore[attr-defined]  # Prefect's attribute
        return dispatch

    return decorate
