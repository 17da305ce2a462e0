"""Prefect's import path `prefect.logging.loggers`."""

from ..runlog import get_run_logger, print_as_log

__all__ = ["get_run_logger", "print_as_log"]
