"""A sync flow run's `timeout_seconds`: `FlowTimedOut` raised in the flow's thread when it is up."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from . import interrupts


class FlowTimedOut(TimeoutError):
    """Raised in a flow's thread when it runs past its `timeout_seconds`."""


def timeout_message(seconds: float | None) -> str:
    return f"Flow run exceeded timeout of {seconds} second(s)"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Raise FlowTimedOut in this thread after `seconds` (`interrupts.deadline`). The event it
    yields is set when it fires: a FlowTimedOut without it is a nested flow's, raised on."""
    fired = threading.Event()
    with interrupts.deadline(seconds, FlowTimedOut, timeout_message(seconds), on_fire=fired.set):
        yield fired
