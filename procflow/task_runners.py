"""Prefect's module name for the task runners."""

from .runners.processes import ProcessPoolTaskRunner
from .runners.threads import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

__all__ = ["ProcessPoolTaskRunner", "ThreadPoolTaskRunner", "ConcurrentTaskRunner", "SequentialTaskRunner"]
