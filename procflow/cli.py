"""`procflow` command line (filled in by the CLI issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("procflow: commands: run, bench", file=sys.stderr)
    return 2
