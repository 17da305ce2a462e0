"""What observers (the console, tests, tools) hear about runs. No cost without observers."""

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


class Observers(Observer):
    """Fan-out to the registered observers."""

    def __init__(self, members: list[Observer] | None = None) -> None:
        self.members = list(members or [])

    def flow_started(self, flow_run: FlowRun) -> None:
        for member in self.members:
            member.flow_started(flow_run)

    def runs_created(self, flow_run: FlowRun, runs: list[TaskRun], mapped: bool) -> None:
        for member in self.members:
            member.runs_created(flow_run, runs, mapped)

    def runs_finished(self, runs: list[TaskRun]) -> None:
        for member in self.members:
            member.runs_finished(runs)

    def flow_finished(self, flow_run: FlowRun) -> None:
        for member in self.members:
            member.flow_finished(flow_run)
