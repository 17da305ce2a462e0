"""`procflow.dask.DaskTaskRunner` (needs the extra: `pip install 'procflow[dask]'`)."""

from . import context  # noqa: F401 - registers the runners' direct use (`with runner: runner.submit(...)`)
from .runners.dask import DaskResult, DaskTaskRunner

__all__ = ["DaskTaskRunner", "DaskResult"]
