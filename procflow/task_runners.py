"""Prefect's module name for the task runners.

Importing it wires their direct use (`with ThreadPoolTaskRunner() as runner:
runner.submit(task, parameters)`, Prefect's engine's and tests' use of a runner): `context.py`
registers the flow run such a block opens (`RunnerRuns`).
"""

from . import context  # noqa: F401 - registers runners.base.DirectUse.opener
from .runners.processes import ProcessPoolTaskRunner
from .runners.threads import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

__all__ = ["ProcessPoolTaskRunner", "ThreadPoolTaskRunner", "ConcurrentTaskRunner", "SequentialTaskRunner"]
