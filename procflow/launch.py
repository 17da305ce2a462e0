"""The `procflow` command's entry point: signal handlers first, the heavy imports after.

`procflow run` signalled while it starts (importing procflow and the script, building the
runner) must end as it does during the flow: exit 130 with one line, never a traceback
(SIGINT) or a bare -15 (SIGTERM). So the handlers go in before anything else is imported.

While procflow's own modules import, a signal is only noted, and acted on once they are in:
a `KeyboardInterrupt` raised in the middle of an import can surface as something else (in a
class body's `__set_name__` it becomes a `RuntimeError` with a traceback), or leave the
interpreter exiting by SIGINT (-2) although it was caught. The user's script, imported
next, is interrupted at once, as a slow import must be.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from .interrupts import INTERRUPTED, interrupt_once

_noted: list[int] = []


def note_signal(signum: int, frame: Any) -> None:
    """While procflow imports: remember the first signal, ignore the rest."""
    for ignored in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ignored, signal.SIG_IGN)
    _noted.append(signum)


def main(argv: list[str] | None = None) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, note_signal)
    from .cli import main as cli_main

    if _noted:
        return _interrupted(signal.Signals(_noted[0]).name)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt_once)
    try:
        return cli_main(argv)
    except KeyboardInterrupt as interrupt:
        return _interrupted(str(interrupt) or "SIGINT")


def _interrupted(name: str) -> int:
    print(f"procflow: interrupted ({name}) before the flow started", file=sys.stderr)
    return INTERRUPTED
