"""What observers of runs hear: the records of a flow run and the console are two of them.

The engine and the flow runs tell one `Observers` list, which the composition root picks
(`context.open_context`: the records, then the console; a task called outside any flow: the
console alone, so a loop of calls grows no list). The engine never imports the console.
"""

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
    """Each event told to every member, in the list's order."""

    __slots__ = ("members",)

    def __init__(self, *members: Observer) -> None:
        self.members = members

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


class RunRecords(Observer):
    """Keeps each flow run's task runs in its record (`FlowRun.task_runs`): what its final state,
    its summary, report, graph and timeline are made from. First in the list: the console reads them."""

    def runs_created(self, flow_run: FlowRun, runs: list[TaskRun], mapped: bool) -> None:
        flow_run.task_runs.extend(runs)
