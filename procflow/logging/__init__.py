"""Prefect's import path `prefect.logging`: `from procflow.logging import get_run_logger`."""

from ..runlog import get_run_logger, print_as_log

__all__ = ["get_run_logger", "print_as_log"]
