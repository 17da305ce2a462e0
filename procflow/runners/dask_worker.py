"""What runs on a Dask worker for `DaskTaskRunner` (`dask.py` is the client's side).

`run_on_dask` fills the run's argument slots with its upstreams' values (Dask resolved
those futures to values on this worker), runs the call as every runner does
(`execution.execute`, with a timer for `timeout_seconds`), keeps the value here as the
Dask future's result, and reports the outcome as a small event on the runner's topic.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from distributed import get_worker

from ..current import TaskRunInfo
from ..execution import TIMED_OUT, RunTimedOut, execute, task_traceback
from ..messages import Persist, RunIdentity, Status
from ..pickling import loads_function
from ..skeleton import fill
from ..results import store
from ..shapes import Args, Kwargs
from ..task_transactions import sent_back
from ..portable_errors import portable_error
from ..interrupts import deadline


class Arguments:
    """A run's arguments, opaque to Dask: it would walk lists and dicts for futures itself,
    recursively, and a self-referencing argument made that a RecursionError (issue 19). The
    upstream results already travel apart, in `upstream`, one per slot."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: Args, kwargs: Kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __reduce__(self) -> tuple[Any, ...]:
        return (Arguments, (self.args, self.kwargs))


def run_on_dask(function: bytes, topic: str, who: RunIdentity, log_prints: bool, timeout: float | None,
                arguments: Arguments, upstream: list[Any], persist: Persist | None = None) -> Any:
    """On a Dask worker: run, report the outcome as an event, keep the value here."""
    fn = loads_function(function)
    args, kwargs = arguments.args, arguments.kwargs
    run_id = who.run_id
    if upstream:
        args, kwargs = fill(args, upstream), fill(kwargs, upstream)
    logs: list[tuple[int, str]] = []
    with contextlib.nullcontext() if timeout is None else deadline(timeout, RunTimedOut, TIMED_OUT):
        status, value, error, start, end = execute(TaskRunInfo.of(who, fn, args, kwargs), log_prints,
                                                   lambda level, text: logs.append((level, text)), own_interrupts=True)
    if persist is not None and status is Status.COMPLETED:  # the store must be a path this worker shares
        store.write(persist, value, end - start, who.run_name, lambda text: logs.append((logging.WARNING, text)))
    text = task_traceback(error) if error else ""
    worker = get_worker()
    worker.log_event(topic, {
        "run_id": run_id, "status": status.value, "start": start, "end": end, "worker": worker.address,
        "logs": logs, "error": portable_error(error, text) if error is not None else None, "error_text": text,
        "transaction_values": sent_back(who.transaction) if status is Status.COMPLETED else None,
    })
    return value if status is Status.COMPLETED else None
