"""`FutureList`, `wait`, `as_completed`, Prefect's `resolve_futures_to_*`; `TaskFuture` itself
is `task_future.py`'s (re-exported: Prefect's import path `prefect.futures`)."""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable, NamedTuple, TypeVar

from .future_kinds import (PrefectConcurrentFuture, PrefectDistributedFuture, PrefectFuture,
                           PrefectWrappedFuture)
from .resolve import Found, collect, substitute, wait_all
from .states import State
from .task_future import TaskFuture

R = TypeVar("R")


class FutureList(list[Any]):
    """What `.map()` returns: a list of futures with `.result()` and `.wait()`."""

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in self:
            future.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        _check_timeout(timeout)
        self.wait(timeout)
        if timeout is not None and not all(future.done() for future in self):
            raise TimeoutError(f"Timed out waiting for all futures to complete within {timeout} seconds")
        if timeout is None:
            return [future.result(None, raise_on_failure) for future in self]
        deadline, results = time.monotonic() + timeout, []
        for future in self:  # the timeout bounds reading the results too, as in Prefect
            results.append(future.result(max(0.0, deadline - time.monotonic()), raise_on_failure))
            if time.monotonic() > deadline:
                raise TimeoutError(f"Timed out waiting for all futures to complete within {timeout} seconds")
        return results


PrefectFutureList = FutureList
__all__ = ["DoneAndNotDoneFutures", "FutureList", "PrefectConcurrentFuture", "PrefectDistributedFuture",
           "PrefectFuture", "PrefectFutureList", "PrefectWrappedFuture", "TaskFuture", "as_completed",
           "resolve_futures_to_results", "resolve_futures_to_states", "wait"]


class DoneAndNotDoneFutures(NamedTuple):
    done: set[Any]
    not_done: set[Any]


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number, got {timeout}")  # Prefect's words


def wait(futures: Iterable[Any], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait for all futures (procflow's or Prefect's kinds), at most `timeout` seconds; returns
    `(done, not_done)`."""
    _check_timeout(timeout)
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in futures:
        future.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    done = {future for future in futures if future.done()}
    return DoneAndNotDoneFutures(done, set(futures) - done)


def as_completed(futures: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
    """Yield futures as they finish; `TimeoutError` if some are not done in time."""
    _check_timeout(timeout)
    pending = set(futures)
    total = len(pending)
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for future in pending:
        future.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else deadline - time.monotonic()
        try:
            future = finished.get(timeout=None if remaining is None else max(0.0, remaining))
        except queue.Empty:
            raise TimeoutError(f"{len(pending)} (of {total}) futures unfinished") from None  # Prefect's text
        pending.discard(future)
        yield future


def resolve_futures_to_states(expr: Any) -> Any:
    """`expr` with every future in it (at any depth) waited for and replaced by its State (Prefect's)."""
    return _resolved(expr, lambda future, _: future.state, _final_state)


def resolve_futures_to_results(expr: Any) -> Any:
    """`expr` with every future in it waited for and replaced by its result (Prefect's);
    a failed one raises its exception."""
    return _resolved(expr, lambda future, _: future.result(), lambda future: future.result())


def _final_state(future: PrefectFuture[Any]) -> State:
    future.wait()
    return future.state


def _resolved(expr: Any, replace: Callable[[TaskFuture[Any], bool], Any], foreign: Callable[[Any], Any]) -> Any:
    found: Found = []
    collect(expr, found)
    wait_all(found)
    return _replace_foreign(substitute(expr, replace), foreign)


def _replace_foreign(value: Any, replace: Callable[[Any], Any]) -> Any:
    """Prefect-kind futures (`PrefectWrappedFuture` subclasses, ...) in lists, tuples, sets,
    dicts (keys too) and dataclasses, replaced; a PrefectFutureList becomes a plain list."""
    if isinstance(value, PrefectFuture) and not isinstance(value, TaskFuture):
        return replace(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_replace_foreign(item, replace) for item in value]
        if isinstance(value, FutureList) or type(value) is list:
            return items
        return type(value)(items) if not hasattr(value, "_fields") else type(value)(*items)
    if isinstance(value, dict):
        return type(value)((_replace_foreign(key, replace), _replace_foreign(item, replace))
                           for key, item in value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: _replace_foreign(getattr(value, field.name), replace)
                                             for field in dataclasses.fields(value) if field.init})
    return value
