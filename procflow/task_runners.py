"""Prefect's module name for the task runners, and where their direct use is wired in.

`with ThreadPoolTaskRunner() as runner: runner.submit(task, parameters)` (Prefect's engine's and
tests' use of a runner) puts the runs in a flow run of the runner's own (`context.RunnerRuns`).
"""

from .context import RunnerRuns
from .runners.base import DirectUse
from .runners.processes import ProcessPoolTaskRunner
from .runners.threads import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

DirectUse.opener = RunnerRuns

__all__ = ["ProcessPoolTaskRunner", "ThreadPoolTaskRunner", "ConcurrentTaskRunner", "SequentialTaskRunner"]
