"""How `procflow` turns Ctrl-C and SIGTERM into one interruption: a leaf both the entry point
(`launch.py`) and the commands (`cli.py`) install, so neither imports the other for it."""

from __future__ import annotations

import signal
from typing import Any

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
