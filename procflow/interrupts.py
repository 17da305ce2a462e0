"""How procflow interrupts a thread: Ctrl-C and SIGTERM once, and a deadline in this thread.

Also, for a flow run: SIGTERM made Ctrl-C while an outermost flow runs in the main thread
(`sigterm_interrupts`), and a second Ctrl-C exiting at once while the first is handled.
A leaf: the entry point (`launch.py`), the commands (`cli.py`), flow runs (generator ones too),
direct calls and the runners' threads all use it, and none imports another for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from typing import Any, Callable, Iterator

INTERRUPTED = 130  # what a shell reports for a job ended by SIGINT (128 + 2)


def interrupt_once(signum: int, frame: Any) -> None:
    """The first Ctrl-C (or SIGTERM) interrupts; from then on the flow's own handlers take
    over while it cleans up, and once it has, further signals are ignored.

    Ignoring starts here, in the handler, rather than where the `KeyboardInterrupt` is
    caught: a Ctrl-C landing in between would otherwise escape as a second
    `KeyboardInterrupt` and end the process with a traceback instead of 130.
    """
    for ignored in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ignored, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_thread(thread_id: int, error: type[BaseException]) -> bool:
    """Raise `error` in another thread at its next bytecode; False if it is gone."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(error))
    return bool(done == 1)


@contextlib.contextmanager
def deadline(seconds: float, error: type[BaseException], message: str,
             on_fire: Callable[[], None] | None = None) -> Iterator[None]:
    """Raise `error` in this thread after `seconds`: by SIGALRM in the main thread, when no
    other alarm is set (it interrupts a blocking call such as `time.sleep`, as Prefect's
    timeouts do), else at the thread's next bytecode (a call blocked in C runs on until it
    returns). `on_fire` is called first, from the thread that fires."""
    if threading.current_thread() is threading.main_thread() and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
        def on_alarm(signum: int, frame: Any) -> None:
            if on_fire is not None:
                on_fire()
            raise error(message)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return

    def on_timer(thread_id: int) -> None:
        if on_fire is not None:
            on_fire()
        interrupt_thread(thread_id, error)

    timer = threading.Timer(seconds, on_timer, (threading.get_ident(),))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def sigterm_interrupts(outermost: bool) -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C while an outermost flow runs in the main thread."""
    if not outermost or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def second_interrupt_exits_at_once() -> Iterator[None]:
    """While a Ctrl-C is being handled, another one (or SIGTERM) ends the process with 130.

    The previous handlers come back afterwards: in a session that goes on (IPython,
    Jupyter), a later Ctrl-C interrupts again instead of killing the interpreter.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _exit_now)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be restored
                signal.signal(signum, handler)


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(130)
