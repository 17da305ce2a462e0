"""What an attempt's end means for its run: finish, retry, or put back (issue 17).

One pure decision for submitted runs (the engine, from a runner's `Outcome`) and direct
calls (`direct.py`, from `execution.execute`) alike, so a retry, a timeout or a returned
state reads the same everywhere:

    ending (status, value, error) + the task's options + the run's attempts
        -> Finish(state)             the run ends in this state (hooks, then published)
        -> Retry(reason, delay)      AwaitingRetry: logged, run again after `delay` seconds
        -> PutBack()                 it did not run (lost, deferred, its worker spent):
                                     no attempt counted, ready again

It performs nothing: the caller logs, publishes, sleeps or arms a timer. The only code it
calls is the user's `retry_condition_fn` (`should_retry`), as Prefect does
at the same point. Tests drive it with fake endings and no processes
(`tests/test_attempts.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from .messages import Status
from .runlog import TASK_LOGGER
from .states import Cancelled, Completed, Crashed, Failed, Pending, ReturnedState, State, TimedOut, run_timeout_error
from .exceptions import CrashedRun

if TYPE_CHECKING:
    from .records import TaskRun


class RetryPolicy(Protocol):
    """What a decision reads of a task: its retry and timeout options (a `Task` has them)."""

    retries: int
    retry_delay_seconds: Any  # seconds, or a list of them (one per retry)
    retry_jitter_factor: float | None
    retry_condition_fn: Callable[..., bool] | None  # Prefect's: (task, task_run, state) -> retry?
    timeout_seconds: float | None

MAX_CRASHES = 3  # a run that crashes its worker this many times in a row is not retried
NOT_RUN = (Status.LOST, Status.DEFERRED, Status.SPENT)


@dataclass(frozen=True, slots=True)
class Finish:
    state: State

    @property
    def ok(self) -> bool:
        """Its downstream runs may start (a failed one blocks them)."""
        return self.state.is_completed()


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str  # for the "Retrying" log line: the error, or the state it returned
    delay: float  # seconds before the next attempt
    waiting: State  # Pending "AwaitingRetry", what the run shows meanwhile


@dataclass(frozen=True, slots=True)
class PutBack:
    """The attempt did not happen: no attempt and no retry are spent."""


Decision = Union[Finish, Retry, PutBack]


def decide(task: RetryPolicy, run: TaskRun, status: Status, value: Any = None, error: Any = None,
           error_text: str = "", crashes: int = 0) -> Decision:
    """The next step of `run` after the attempt numbered `run.attempts` ended with `status`.

    `crashes`: the run's crashes in a row, this one included (a crash is retried while
    retries are left, at most `MAX_CRASHES` times in a row, and never asks
    `retry_condition_fn`: the task's code did not fail).
    """
    if status in NOT_RUN:
        return PutBack()
    if status is Status.COMPLETED:
        return Finish(Completed(value))
    if status is Status.CANCELLED:
        return Finish(Cancelled("The run was interrupted (Ctrl-C or SIGTERM)."))
    if status is Status.CRASHED:
        message = error_text or f"Worker running task run '{run.name}' died."
        if crashes < MAX_CRASHES and run.attempts <= task.retries:
            return _retry(task, run, message)
        return Finish(Crashed(message, CrashedRun(message)))
    if not isinstance(error, BaseException):  # an error that could not cross back: its text stands in
        error = RuntimeError(error_text)
    if isinstance(error, ReturnedState):  # the task returned a state: a Failed one is retried, as in Prefect 3
        state = error.state()
        return _retry(task, run, f"returned {state!r}") if should_retry(task, run, state) else Finish(state)
    if status is Status.TIMED_OUT:
        error = run_timeout_error(run.name, task.timeout_seconds, worker_replaced=run.worker is None)
    if should_retry(task, run, Failed(error)):
        return _retry(task, run, f"{type(error).__name__}: {error}")
    if status is Status.TIMED_OUT:
        return Finish(TimedOut(error, task.timeout_seconds))
    return Finish(Failed(error))


def retry_delay(task: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based); a list gives one per
    retry. With `retry_jitter_factor=f`, a delay d is drawn from [d(1-f), d(1+f)], as Prefect
    spreads retries of many runs so they do not all return at once."""
    delays = task.retry_delay_seconds
    if isinstance(delays, (list, tuple)):
        delay = float(delays[min(attempt - 1, len(delays) - 1)]) if delays else 0.0
    else:
        delay = float(delays or 0)
    if task.retry_jitter_factor:
        delay = random.uniform(max(0.0, delay * (1 - task.retry_jitter_factor)),
                               delay * (1 + task.retry_jitter_factor))
    return delay


def should_retry(task: RetryPolicy, run: TaskRun, state: State) -> bool:
    """Whether an attempt that ended in `state` runs again: it failed (raised, or returned a
    `Failed` state, as Prefect 3 retries), a retry is left, and Prefect's
    `retry_condition_fn(task, task_run, state)` agrees (False, or an error in it, logged,
    makes this attempt the last)."""
    if not state.is_failed() or run.attempts > task.retries:
        return False
    if task.retry_condition_fn is None:
        return True
    try:
        return bool(task.retry_condition_fn(task, run, state))
    except Exception as error:  # noqa: BLE001 - the user's function: its error ends the retries, said once
        TASK_LOGGER.error(f"Task run '{run.name}' - retry_condition_fn raised {type(error).__name__}: {error}; "
                          "not retrying")
        return False


def _retry(task: RetryPolicy, run: TaskRun, reason: str) -> Retry:
    delay = retry_delay(task, run.attempts)
    return Retry(reason, delay, Pending(f"Retry {run.attempts} of {task.retries} in {delay} s", "AwaitingRetry"))
