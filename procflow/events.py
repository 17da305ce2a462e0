"""What an observer of runs (the console) hears; the engine never imports the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import FlowRun, TaskRun


class Observer:
    """Override what you need; every hook is called from the thread that saw the event."""

    def flow_started(self, flow_run: FlowRun) -> None:
        pass

    def runs_created(self, flow_run: FlowRun, runs: list[TaskRun], mapped: bool) -> None:
        pass

    def runs_finished(self, runs: list[TaskRun]) -> None:
        pass

    def flow_finished(self, flow_run: FlowRun) -> None:
        pass
