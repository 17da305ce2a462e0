"""Prefect's `prefect.runtime`: `flow_run` and `task_run` describe the run in progress.

    from procflow.runtime import flow_run, task_run
    task_run.name, task_run.task_name, task_run.parameters, task_run.id
    flow_run.name, flow_run.flow_name, flow_run.parameters

Outside a run, names are None and parameters `{}`, as in Prefect. In a worker process
the flow run's name is known, not its parameters (`{}`).
"""

from . import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
