"""Prefect's future classes (`prefect.futures`), for code that builds or subclasses them.

procflow's own futures are `TaskFuture`s (a view of a run record, `futures.py`), registered
as `PrefectFuture`s. These classes are for Prefect code that wraps a `concurrent.futures.Future`
itself (`PrefectConcurrentFuture(task_run_id, future)`) or subclasses `PrefectWrappedFuture`;
`wait()` and `as_completed()` take both kinds.
"""

from __future__ import annotations

import abc
import concurrent.futures
from typing import Any, Callable, Generic, TypeVar

from .states import Pending, State

R = TypeVar("R")
F = TypeVar("F")


class PrefectFuture(abc.ABC, Generic[R]):
    """A handle of one task run: its state, `wait()`, `result()`, `add_done_callback()`."""

    def __init__(self, task_run_id: Any) -> None:
        self._task_run_id = task_run_id
        self._final_state: State | None = None

    @property
    def task_run_id(self) -> Any:
        return self._task_run_id

    @property
    def state(self) -> State:
        """The final state once known; Pending before (there is no server to ask)."""
        return self._final_state if self._final_state is not None else Pending()

    def done(self) -> bool:
        return self._final_state is not None

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None: ...

    @abc.abstractmethod
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R: ...

    @abc.abstractmethod
    def add_done_callback(self, fn: Callable[[Any], None]) -> None: ...


class PrefectWrappedFuture(PrefectFuture[R], abc.ABC, Generic[R, F]):
    """A future wrapping another (a `concurrent.futures.Future`, a Dask future)."""

    def __init__(self, task_run_id: Any, wrapped_future: F) -> None:
        self._wrapped_future = wrapped_future
        super().__init__(task_run_id)

    @property
    def wrapped_future(self) -> F:
        return self._wrapped_future

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        if self._final_state is not None:
            fn(self)
            return
        self._wrapped_future.add_done_callback(lambda _: fn(self))  # type: ignore[attr-defined]


class PrefectConcurrentFuture(PrefectWrappedFuture[R, "concurrent.futures.Future[Any]"]):
    """A `concurrent.futures.Future` whose result is the run's State (or its value)."""

    def done(self) -> bool:
        return self._final_state is not None or self._wrapped_future.done()

    def wait(self, timeout: float | None = None) -> None:
        try:
            outcome = self._wrapped_future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return
        if isinstance(outcome, State):
            self._final_state = outcome

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        if self._final_state is None:
            try:
                outcome = self._wrapped_future.result(timeout=timeout)
            except concurrent.futures.TimeoutError as error:
                raise TimeoutError(f"Task run {self.task_run_id} did not complete within {timeout} seconds") from error
            if not isinstance(outcome, State):
                return outcome  # type: ignore[no-any-return]
            self._final_state = outcome
        return self._final_state._result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"PrefectConcurrentFuture(task_run_id={self.task_run_id!r})"


class PrefectDistributedFuture(PrefectFuture[R]):
    """Prefect's future of a run on its server's task workers; procflow has no server, so
    one can be named but not waited on."""

    def wait(self, timeout: float | None = None) -> None:
        raise NotImplementedError("procflow has no Prefect server: a PrefectDistributedFuture cannot be waited on")

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        raise NotImplementedError("procflow has no Prefect server: a PrefectDistributedFuture has no result")

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        raise NotImplementedError("procflow has no Prefect server: a PrefectDistributedFuture cannot call back")
