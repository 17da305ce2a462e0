"""A sync flow run's `timeout_seconds`: `FlowTimedOut` raised in the flow's thread when it is up."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from .runners.threads import interrupt_thread


class FlowTimedOut(TimeoutError):
    """Raised in a flow's thread when it runs past its `timeout_seconds`."""


def timeout_message(seconds: float | None) -> str:
    return f"Flow run exceeded timeout of {seconds} second(s)"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Raise FlowTimedOut in this thread after `seconds`: by SIGALRM in the main thread (it
    interrupts a blocking call such as sleep), else at the thread's next bytecode. The event
    it yields is set when it fires: a FlowTimedOut without it is a nested flow's, raised on."""
    message = timeout_message(seconds)
    fired = threading.Event()
    if threading.current_thread() is threading.main_thread() and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
        def on_alarm(signum: int, frame: Any) -> None:
            fired.set()
            raise FlowTimedOut(message)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield fired
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return

    def on_timer(thread_id: int) -> None:
        fired.set()
        interrupt_thread(thread_id, FlowTimedOut)

    timer = threading.Timer(seconds, on_timer, (threading.get_ident(),))
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
