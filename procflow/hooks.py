"""Prefect's state hooks: `on_completion=`, `on_failure=`, `on_running=` (tasks and flows),
`on_crashed=` and `on_cancellation=` (flows). Each is a list of `hook(task_or_flow, run, state)`.

All hooks run in the flow's process, with procflow's own run records (`TaskRun`,
`FlowRun`). A task's hooks run on the engine's hook threads as runs end, before the
run's end is published: its future, its downstream runs and its flow run wait
for them, as they wait for Prefect's, which run inside the task run. `on_running` hooks
run when the run is sent to the runner. A flow's hooks run in the flow's thread. An
error in a hook is logged (Prefect's words) and changes no state.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .runlog import Emit
from .states import State, StateType

_FOR_STATE = {StateType.COMPLETED: "on_completion", StateType.FAILED: "on_failure", StateType.RUNNING: "on_running",
              StateType.CRASHED: "on_crashed", StateType.CANCELLED: "on_cancellation",
              StateType.CANCELLING: "on_cancellation"}  # a flow returning Cancelling(), as in Prefect


def hook_lists(owner: str, **given: Any) -> dict[str, list[Callable[..., Any]]]:
    """The hooks given as options, checked: each option a list of functions.
    A bad one raises Prefect's error text, after the task or flow it belongs to."""
    lists: dict[str, list[Callable[..., Any]]] = {}
    kind = owner.split()[0]  # "task" or "flow"
    for name, value in given.items():
        example = (f"Please provide a list of hooks to '{name}':\n\n"
                   f"@{kind}({name}=[hook1, hook2])\ndef my_{kind}():\n\tpass")
        try:  # one function alone is refused too, as Prefect does: a list is asked for
            if callable(value):
                raise TypeError
            hooks = [] if value is None else list(value)
        except TypeError:
            raise TypeError(f"{owner}: Expected iterable for '{name}'; got {type(value).__name__} instead. "
                            f"{example}") from None
        for hook in hooks:
            if not callable(hook):
                raise TypeError(f"{owner}: Expected callables in '{name}'; got {type(hook).__name__} instead. "
                                f"{example}")
        lists[name] = hooks
    return lists


def hooks_for(hooks: dict[str, list[Callable[..., Any]]], state: State) -> list[Callable[..., Any]]:
    """The hooks that entering `state` calls (none for a name it does not have)."""
    name = _FOR_STATE.get(state.type)
    return hooks.get(name, []) if name else []


def call_hooks(hooks: list[Callable[..., Any]], subject: Any, run: Any, state: State, emit: Emit) -> None:
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        emit(logging.INFO, f"Running hook {name!r} in response to entering state {state.name!r}")
        try:
            result = hook(subject, run, state)
            if inspect.iscoroutine(result):
                _run_to_end(result)
        except Exception:  # noqa: BLE001 - as Prefect: a failing hook is logged, the run's state stands
            emit(logging.ERROR, f"An error was encountered while running hook {name!r}\n"
                                f"{traceback.format_exc().rstrip()}")
        else:
            emit(logging.INFO, f"Hook {name!r} finished running successfully")


def _run_to_end(coroutine: Any) -> None:
    """An `async def` hook: in an event loop of its own; beside a running loop (an async
    flow's thread), in a thread of its own, with this context."""
    import asyncio  # only for async hooks

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    context = contextvars.copy_context()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            context.run(asyncio.run, coroutine)
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="procflow-async-hook")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _hook_list(name: str) -> property:
    """A read-only attribute for one option's hook list (Prefect's `on_failure_hooks`)."""
    return property(lambda self: self.state_hooks[name], doc=f"The `{name}` hooks, as a list.")


class StateHookMethods:
    """Prefect's decorator forms, `@my_task.on_failure`: each adds a hook and returns it."""

    state_hooks: dict[str, list[Callable[..., Any]]]

    def _add_hook(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.state_hooks[name].append(fn)
        return fn

    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_failure", fn)

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_running", fn)

    # Prefect's attributes for the lists (`my_flow.on_failure_hooks`), the same list objects
    on_completion_hooks = _hook_list("on_completion")
    on_failure_hooks = _hook_list("on_failure")
    on_running_hooks = _hook_list("on_running")


class TaskHookMethods(StateHookMethods):
    """A task's also: `@my_task.on_commit`, `@my_task.on_rollback`, called `hook(transaction)`
    when the run's transaction commits or rolls back (`transactions.py`)."""

    def on_commit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_commit", fn)

    def on_rollback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_rollback", fn)

    on_commit_hooks = _hook_list("on_commit")
    on_rollback_hooks = _hook_list("on_rollback")


class FlowHookMethods(StateHookMethods):
    """A flow's also: `@my_flow.on_crashed`, `@my_flow.on_cancellation`."""

    def on_crashed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_crashed", fn)

    def on_cancellation(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._add_hook("on_cancellation", fn)

    on_crashed_hooks = _hook_list("on_crashed")
    on_cancellation_hooks = _hook_list("on_cancellation")


class HookThreads:
    """The engine's threads for task hooks, started on first use: a few, so that a hook
    waiting on another run's future does not wait behind that run's own hooks."""

    THREADS = 4

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, call: Callable[[], None], then: Callable[[], None]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.THREADS, thread_name_prefix="procflow-hooks")

        def run() -> None:
            try:
                call()
            finally:
                then()

        self._executor.submit(run)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
