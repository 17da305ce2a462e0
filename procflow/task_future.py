"""`TaskFuture`: the handle of one task run, a view of its record.

The engine writes the record's state, then wakes waiters through the `Waiter` shared by
every future of the flow run (one condition, not one lock per future: 100 000 futures stay
cheap). Callbacks run outside the lock, in the engine's thread. A leaf below `resolve.py`
and `futures.py` (which adds `FutureList`, `wait`, `as_completed` and Prefect's helpers).
"""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from typing import Any, Callable, Generic, TypeVar

from .future_kinds import PrefectFuture
from .records import TaskRun
from .run_ids import task_run_uuid
from .states import State, is_terminal

R = TypeVar("R")


class Waiter:
    """One condition for all futures of a flow run, and their done-callbacks."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.callbacks: dict[int, list[tuple[Callable[[TaskFuture[Any]], None], TaskFuture[Any]]]] = {}


class TaskFuture(Generic[R]):
    """What `.submit()` returns: the handle of one task run."""

    # `__dict__`: users attach their own attributes (`future.parameters = ...`), as Prefect's
    # futures allow; the dict is made only when one is set.
    __slots__ = ("task_run", "_waiter", "given", "__weakref__", "__dict__")

    def __init__(self, task_run: TaskRun, waiter: Waiter) -> None:
        self.task_run = task_run
        self._waiter = waiter
        self.given: State | None = None  # the state a direct call returned (`return_state=True`)

    @property
    def state(self) -> State:
        state = self.task_run.state
        if is_terminal(state):  # held by this future: see `State.holder`
            given = self.given
            if given is not None and given.type is state.type and given.data is state.data:
                return given  # the very object the caller and the hooks got, as in Prefect
            return State(state.type, state.name, state.message, state.data, self)
        return state

    @property
    def task_run_id(self) -> uuid.UUID:
        """Prefect's: the run's id, a UUID (`run_ids.py`); `task_run.id` is the engine's int."""
        return task_run_uuid(self.task_run.id)

    def done(self) -> bool:
        return is_terminal(self.task_run.state)

    def wait(self, timeout: float | None = None) -> None:
        if self.done():
            return
        with self._waiter.condition:
            self._waiter.condition.wait_for(self.done, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        self.wait(timeout)
        if not self.done():
            raise TimeoutError(f"task run {self.task_run.name!r} did not finish within {timeout} s")
        state = self.task_run.state
        try:
            value: R = state._result(raise_on_failure=raise_on_failure)
            return value
        except Exception as error:
            if not state.is_completed():  # the run's own error
                raise
            raise RuntimeError(f"could not load the result of task run {self.task_run.name!r}: "
                               f"{type(error).__name__}: {error}") from error

    def add_done_callback(self, fn: Callable[[TaskFuture[Any]], None]) -> None:
        with self._waiter.condition:
            if not self.done():
                self._waiter.callbacks.setdefault(self.task_run.id, []).append((fn, self))
                return
        fn(self)

    @property
    def wrapped_future(self) -> concurrent.futures.Future[State]:
        """Prefect's: a `concurrent.futures.Future` of the run, whose result is its final state
        (made at the first ask, kept in the future's `__dict__`)."""
        made: concurrent.futures.Future[State] | None = self.__dict__.get("_wrapped")
        if made is None:
            made = self.__dict__["_wrapped"] = concurrent.futures.Future()
            self.add_done_callback(lambda future: made.set_result(future.state))
        return made

    def __repr__(self) -> str:
        return f"TaskFuture({self.task_run.name!r}, state={self.task_run.state!r})"


PrefectFuture.register(TaskFuture)
