"""`procflow cache ls|du|clear|verify [--task NAME] [--older-than 7d] [--dir DIR]`: the result store.

`ls` lists entries (task, key, size, age, expiry, the run time each one saves), `du` sums them
per task, `clear` removes the chosen ones (and temporary files writers left), `verify` checks
every byte of each entry against its CRC-32s (reads only check samples of large buffers).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .results.entries import Damaged, Header, verify_entry
from .results.store import entries, storage_directory, sweep_temporaries

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("cache", help="list, measure or clear persisted results",
                                 description="The result store: persisted task results and cache entries.")
    parser.add_argument("action", choices=("ls", "du", "clear", "verify"))
    parser.add_argument("--task", default=None, metavar="NAME", help="only the entries of this task")
    parser.add_argument("--older-than", type=age, default=None, metavar="AGE", help="e.g. 90s, 12h, 7d, 2w")
    parser.add_argument("--dir", type=Path, default=None, help="the store (default: the configured one)")


def age(text: str) -> float:
    match = _AGE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"an age such as 90s, 30m, 12h, 7d or 2w, got {text!r}")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def run(options: argparse.Namespace) -> int:
    directory = options.dir if options.dir is not None else storage_directory()
    console = Console()
    if not directory.is_dir():
        console.print(f"No result store at {directory}")
        return 0
    chosen = list(_chosen(directory, options.task, options.older_than))
    if options.action == "ls":
        console.print(_listing(directory, chosen))
    elif options.action == "du":
        console.print(_usage(directory, chosen))
    elif options.action == "verify":
        return _verify(console, chosen)
    else:
        for path, _, _ in chosen:
            path.unlink(missing_ok=True)
        swept = sweep_temporaries(directory, everything=True) if options.task is None else 0
        total = sum(size for _, _, size in chosen)
        console.print(f"Removed {len(chosen)} entries ({_size(total)}) from {directory}"
                      + (f", and {swept} temporary files" if swept else ""))
    return 0


def _chosen(directory: Path, task: str | None, older_than: float | None) -> Any:
    now = time.time()
    for path, header, size in entries(directory):
        if task is not None and (not isinstance(header, Header) or header.task != task):
            continue
        made = header.created if isinstance(header, Header) else path.stat().st_mtime
        if older_than is not None and now - made < older_than:
            continue
        yield path, header, size


def _listing(directory: Path, chosen: list[Any]) -> Table:
    table = Table(title=f"Result store {directory}")
    for column in ("task", "entry", "size", "age", "expires", "saves"):
        table.add_column(column, justify="right" if column in ("size", "age", "saves") else "left")
    now = time.time()
    for path, header, size in chosen:
        name = str(path.relative_to(directory))
        if isinstance(header, Damaged):
            table.add_row("?", name, _size(size), "", f"[red]damaged: {header}[/]", "")
            continue
        expires = "never" if header.expires is None else (
            "[yellow]expired[/]" if header.expired(now) else f"in {_duration(header.expires - now)}")
        table.add_row(header.task, name, _size(size), _duration(now - header.created), expires,
                      _duration(header.duration))
    return table


def _usage(directory: Path, chosen: list[Any]) -> Table:
    table = Table(title=f"Result store {directory}")
    for column in ("task", "entries", "size", "run time they stand for"):
        table.add_column(column, justify="left" if column == "task" else "right")
    by_task: dict[str, list[float]] = {}
    for _, header, size in chosen:
        task = header.task if isinstance(header, Header) else "(damaged)"
        totals = by_task.setdefault(task, [0, 0, 0.0])
        totals[0] += 1
        totals[1] += size
        totals[2] += header.duration if isinstance(header, Header) else 0.0
    for task, (count, size, duration) in sorted(by_task.items(), key=lambda item: -item[1][1]):
        table.add_row(task, str(int(count)), _size(int(size)), _duration(duration))
    table.add_row("[bold]total", str(len(chosen)), _size(sum(size for _, _, size in chosen)), "")
    return table


def _verify(console: Console, chosen: list[Any]) -> int:
    bad = 0
    for path, header, _ in chosen:
        try:
            if isinstance(header, Damaged):
                raise header
            verify_entry(str(path), header, whole=True)
        except (Damaged, OSError) as error:
            bad += 1
            console.print(f"[red]damaged[/] {path}: {error}")
    console.print(f"{len(chosen) - bad} of {len(chosen)} entries are whole")
    return 1 if bad else 0


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024  # type: ignore[assignment]
    return ""


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
