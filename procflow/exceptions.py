"""The errors procflow raises, under Prefect's names (`prefect.exceptions`): a leaf module.

Results raise them (`State.result()`), binding raises them before anything runs, and a
worker's error that could not come back as itself arrives as a `RemoteError` with the
worker's traceback text as its cause (`RemoteTraceback`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable


class PrefectException(Exception):
    """The base of Prefect's own errors (Prefect's name): `except PrefectException` catches them."""


class UnfinishedRun(PrefectException):
    """`.result()` of a state that is not final yet."""


class UpstreamTaskError(UnfinishedRun):
    """The result of a run that never ran because an upstream did not complete.

    An `UnfinishedRun`, as Prefect raises for it: Prefect code catching that keeps working.
    """


class MissingContextError(PrefectException, RuntimeError):
    """Called outside a flow or task run something that needs one (Prefect's name)."""


class ParameterBindError(TypeError, PrefectException):
    """Arguments a task or flow function would refuse (Prefect's name), raised before anything runs."""

    @classmethod
    def from_bind_failure(cls, fn: Callable[..., Any], exc: TypeError, call_args: tuple[Any, ...],
                          call_kwargs: dict[str, Any]) -> ParameterBindError:
        """Prefect's: the error naming the function, its signature and what it was given."""
        signature = str(inspect.signature(fn))[1:-1]
        return cls(f"Error binding parameters for function '{fn.__name__}': {exc}.\nFunction '{fn.__name__}' has "
                   f"signature '{signature}' but received args: {call_args} and kwargs: {list(call_kwargs)}.")


class SignatureMismatchError(PrefectException, TypeError):
    """Parameters that do not match a function's (Prefect's name)."""

    @classmethod
    def from_bad_params(cls, expected_params: list[str], provided_params: list[str]) -> SignatureMismatchError:
        return cls(f"Function expects parameters {expected_params} but was provided with parameters "
                   f"{provided_params}")


class ParameterTypeError(PrefectException):
    """A flow's argument its annotation refuses (Prefect's name): the flow run fails before it runs."""

    @classmethod
    def from_validation_error(cls, exc: Any) -> ParameterTypeError:
        """Prefect's: the error of a pydantic `ValidationError`, a line per problem (where: what)."""
        problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
        return cls("Flow run received invalid parameters:\n - " + "\n - ".join(problems))


class ReservedArgumentError(PrefectException, TypeError):
    """A task or flow function has a parameter named `wait_for` or `return_state` (Prefect's name)."""


class InvalidNameError(PrefectException, ValueError):
    """A flow name with a character Prefect refuses (Prefect's name)."""


class MappingLengthMismatch(PrefectException, ValueError):
    """`.map()` got iterables of different lengths."""


class MappingMissingIterable(PrefectException, ValueError):
    """`.map()` got no iterable to map over."""


class PausedRun(PrefectException):
    """`.result()` of a paused run (Prefect's name): it has none."""


class MissingResult(PrefectException):
    """A state whose result is not there (Prefect's name)."""


class CrashedRun(PrefectException):
    """The worker process running the task died."""


class CancelledRun(PrefectException):
    """The run was cancelled before it finished (Ctrl-C, SIGTERM, flow timeout)."""


class FailedRun(PrefectException):
    """The result of a failed state that holds no exception (one a flow returned): its message."""


class ExternalSignal(BaseException):
    """A signal-like exception from outside the run, never to be caught by user code (Prefect's)."""


class TerminationSignal(ExternalSignal):
    """The process received a termination signal (Prefect's; `exception_to_crashed_state` names it)."""

    def __init__(self, signal: int) -> None:
        super().__init__(signal)
        self.signal = signal


class ConfigurationError(PrefectException):
    """A transaction asked for an isolation level its result store cannot give."""


class ScriptError(PrefectException):
    """Running the script of an entrypoint raised (Prefect's name): `user_exc` is what it raised."""

    def __init__(self, user_exc: BaseException, path: str) -> None:
        super().__init__(f"Script at {str(path)!r} encountered an exception: {user_exc!r}")
        self.user_exc, self.path = user_exc, path

    def __reduce__(self) -> tuple[Any, ...]:
        return (ScriptError, (self.user_exc, self.path))


class MissingFlowError(PrefectException):
    """The object an entrypoint names is not there, or is not a flow (Prefect's name)."""


class RemoteError(Exception):
    """An exception from a worker that could not be brought back as itself.

    Keeps the original type name, message and traceback text.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:  # keep the three fields
        return (RemoteError, (self.type_name, self.message, self.traceback_text))


class RemoteTraceback(Exception):
    """The worker's traceback text, attached as `__cause__` of a remote error."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text
