"""The `procflow` command's entry point: signal handlers first, the heavy imports after.

`procflow run` signalled while it starts (importing procflow and the script, building the
runner) must end as it does during the flow: exit 130 with one line, never a traceback
(SIGINT) or a bare -15 (SIGTERM). So the handlers go in before anything else is imported.
"""

from __future__ import annotations

import signal
import sys
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


def main(argv: list[str] | None = None) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt_once)
    try:
        from .cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt as interrupt:
        print(f"procflow: interrupted ({interrupt or 'SIGINT'}) before the flow started", file=sys.stderr)
        return INTERRUPTED
