"""Run names, for task runs and flow runs alike: a template, or a default.

A `task_run_name` / `flow_run_name` is a string rendered with the call's parameters
(`"{x}-{y.name}"`), or a function that reads the run from `procflow.runtime`, as in
Prefect; without one, a task run is `<task>-<n>` (counted per flow run) and a flow run
gets two random words. A task-run template naming an argument that holds futures is
rendered once their results are in (`resolved_task_run_name`); until then the run has
its default name, as Prefect does.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import options
from .current import FlowRunInfo, TaskRunInfo, call_naming, current_task_run, naming_flow_run
from .flow_names import random_flow_run_name
from .resolve import collect, substitute
from .shapes import Args, Kwargs
from .signatures import template_fields


class RunCounter(Protocol):
    """Where task runs are named and counted: a flow run's context (`context.FlowContext`)."""

    flow_run: Any  # its record: `.name`

    def next_run_name(self, task_name: str) -> str: ...


def task_run_name(task: Any, context: RunCounter, args: Args, kwargs: Kwargs, needs: bool) -> tuple[str, bool]:
    """The run's name, and whether it is provisional (its template names futures' results)."""
    template = task.options.task_run_name
    if template is None:  # the common case: no text made for a check, per run
        return context.next_run_name(task.options.name), False
    template = options.text_or_callable(f"task {task.name!r}", "task_run_name", template)  # assigned later?
    if callable(template):  # Prefect's way: it reads the run from procflow.runtime.task_run
        naming = TaskRunInfo(None, None, task.name, context.flow_run.name, task.fn, args, kwargs)
        return call_naming(current_task_run, naming, template), False
    parameters = task.parameters_of(args, kwargs)
    name = options.render_name(f"task {task.name!r}", "task_run_name", template, parameters)
    if needs and any(collect(parameters[field], []) for field in template_fields(template)):
        return context.next_run_name(task.name), True
    return name, False


def resolved_task_run_name(task: Any, args: Args, kwargs: Kwargs) -> str:
    """The `task_run_name` template rendered with the results of the futures it names."""
    assert isinstance(task.task_run_name, str)
    parameters = task.parameters_of(args, kwargs)
    for field in template_fields(task.task_run_name):
        parameters[field] = substitute(parameters[field])
    return options.render_name(f"task {task.name!r}", "task_run_name", task.task_run_name, parameters)


def flow_run_name(flow: Any, parameters: dict[str, Any]) -> str:
    template = flow.flow_run_name
    if template is not None and not isinstance(template, str) and not callable(template):  # set after decorating
        raise TypeError(f"Expected string or callable for 'flow_run_name'; got {type(template).__name__} instead.")
    if template is None:
        return random_flow_run_name()
    if callable(template):  # Prefect's way: it reads the run from procflow.runtime.flow_run
        return call_naming(naming_flow_run, FlowRunInfo(None, flow.name, dict(parameters)), template)
    return options.render_name(f"flow {flow.name!r}", "flow_run_name", template, parameters)
