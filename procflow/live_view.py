"""The terminal's live progress view and the end summary (rich).

The live view is a bar per task name (done / total, failed and retried counts, rate,
ETA; rich computes rate and ETA from the updates) under one line: elapsed time, workers
busy out of the pool's size and their CPU use (psutil, sampled once a second), and
shared memory in use and at peak. Counts change with the engine's events (a few integer
updates per run), never by walking all runs; rich redraws at most 10 times a second.
It exists only on a terminal (`console.ConsoleObserver`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Callable

import psutil
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .records import FlowRun, TaskRun
from .run_summary import PART_TITLES, PARTS, human_bytes, human_seconds, summarise
from .shm_pool import shm_used_bytes


SHORT_PARTS = {"waiting": "waiting", "queued": "queued", "loading": "loading", "transfer": "moving",
               "running": "running"}


class LiveView:
    """Bars per task name and a status line, for one outermost flow run."""

    def __init__(self, flow_run: FlowRun, console: Any) -> None:
        self.flow_run = flow_run
        self._lock = threading.Lock()
        self._bars: dict[str, TaskID] = {}
        self._failed: dict[str, int] = {}
        self._retried: dict[str, int] = {}
        self._progress = Progress(
            TextColumn("{task.description}", style="bold"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]}[/red] [yellow]{task.fields[retried]}[/yellow]"),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, auto_refresh=False)
        self._workers = _PoolSampler()
        self._shm_peak = 0
        self._live = Live(get_renderable=self._render, console=console, refresh_per_second=10, transient=True)
        self._live.start()

    def created(self, runs: list[TaskRun]) -> None:
        added = Counter(run.task_name for run in runs)  # one update per task name: a map of a million is one
        with self._lock:
            for name, count in added.items():
                bar = self._bars.get(name)
                if bar is None:
                    bar = self._bars[name] = self._progress.add_task(name, total=0, failed="", retried="", rate="")
                    self._failed[name] = self._retried[name] = 0
                self._progress.update(bar, total=(self._progress.tasks[bar].total or 0) + count)

    def finished(self, runs: list[TaskRun]) -> None:
        done: Counter[Any] = Counter()
        for run in runs:
            name = run.task_name
            done[name] += 1
            if not run.state.is_completed():
                self._failed[name] = self._failed.get(name, 0) + 1
            if run.attempts > 1:
                self._retried[name] = self._retried.get(name, 0) + 1
        with self._lock:
            for name, count in done.items():
                bar = self._bars.get(name)
                if bar is None:
                    continue
                speed = self._progress.tasks[bar].speed
                self._progress.update(
                    bar, advance=count, failed=f"{self._failed[name]} failed" if self._failed[name] else "",
                    retried=f"{self._retried[name]} retried" if self._retried[name] else "",
                    rate=f"{speed:.1f}/s" if speed else "")

    def _render(self) -> Group:
        elapsed = time.time() - self.flow_run.start_time
        used = shm_used_bytes()
        self._shm_peak = max(self._shm_peak, used)
        busy, cpu, size = self._workers.sample(self.flow_run.workers, self.flow_run.busy_workers)
        line = Text(f"Flow run '{self.flow_run.name}' · {human_seconds(elapsed)} · workers busy {busy}/{size} · "
                    f"CPU {cpu:.0f}% · shared memory {human_bytes(used)} (peak {human_bytes(self._shm_peak)})",
                    no_wrap=True, overflow="ellipsis")
        with self._lock:
            return Group(line, self._progress.get_renderable())

    def stop(self) -> None:
        self._live.stop()


class _PoolSampler:
    """Busy workers and their CPU: this process's worker children, sampled once a second."""

    BUSY_CPU = 25.0  # percent of one core: a worker above it is running a task

    def __init__(self) -> None:
        self._at = 0.0
        self._last = (0, 0.0, 0)
        self._children: dict[int, psutil.Process] = {}

    def sample(self, pool_size: int | None, busy_workers: Callable[[], int] | None) -> tuple[int, float, int]:
        """(busy workers, their CPU %, pool size): busy by the runner's own count when it has one
        (the process runner's scoreboards), else by CPU use."""
        now = time.monotonic()
        if now - self._at < 1.0:
            return self._last
        self._at = now
        try:
            current = {child.pid: child for child in psutil.Process().children()
                       if child.pid in self._children or "loky" in " ".join(child.cmdline())}
        except psutil.Error:
            current = {}
        self._children = {pid: self._children.get(pid, child) for pid, child in current.items()}
        loads = []
        for child in self._children.values():
            try:
                loads.append(child.cpu_percent(interval=None))
            except psutil.Error:
                continue
        size = pool_size or len(loads)
        busy = busy_workers() if busy_workers is not None else sum(load > self.BUSY_CPU for load in loads)
        self._last = (min(size, busy), sum(loads), size)
        return self._last


def end_summary(flow_run: FlowRun) -> Group:
    """Wall time, workers and their use, memory held; per task name the counts, run times
    and where the time went; the cache; the failures (a few in full, then counts)."""
    summary = summarise(flow_run)
    head = (f"Flow run '{summary.flow_run}' {summary.state} · wall {human_seconds(summary.wall_seconds)} · "
            f"{summary.workers} workers {summary.utilisation:.0%} busy · results held at peak "
            f"{human_bytes(summary.held_bytes_peak)}")
    parts: list[Any] = [Text(head, no_wrap=True, overflow="ellipsis", style="bold")]
    # Narrow enough for a 100-column terminal: short titles, explained on the line below,
    # and the retried / cached columns only when a run was.
    optional = [name for name, count in (("retried", sum(t.retried for t in summary.tasks)),
                                         ("cached", sum(t.cached for t in summary.tasks))) if count]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("task", "runs", "ok", "not ok", *optional, "total", "p50", "p95", *SHORT_PARTS.values()):
        table.add_column(column, justify="left" if column == "task" else "right", no_wrap=True)
    for task in summary.tasks:
        extra = [str(getattr(task, name)) for name in optional]
        table.add_row(task.task, str(task.count), str(task.completed), str(task.failed), *extra,
                      human_seconds(task.run_total), human_seconds(task.percentile(0.5)),
                      human_seconds(task.percentile(0.95)), *(f"{task.share(part):.0%}" for part in PARTS))
    parts.append(table)
    parts.append(Text("total, p50, p95: run time; then each part's share of the runs' time: "
                      + ", ".join(f"{SHORT_PARTS[part]} = {PART_TITLES[part]}" for part in PARTS), style="dim"))
    if summary.cached:
        parts.append(Text(f"{summary.cached} runs served from the cache, saving "
                          f"{summary.cache_saved_seconds:.1f} s of run time"))
    if summary.failures:
        parts.append(Text(f"Did not complete: {summary.failure_total}", style="bold red"))
        for failure in summary.failures:
            parts.append(Text(f"  {failure.run} {failure.state}: {failure.first_line}", no_wrap=True,
                              overflow="ellipsis"))
        rest = summary.failure_counts()
        if rest:
            counted = ", ".join(f"{kind} ×{count}" for kind, count in rest)
            parts.append(Text(f"  and {summary.failure_total - len(summary.failures)} more: {counted}"))
    return Group(*parts)
