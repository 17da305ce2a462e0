"""`procflow.dask.DaskTaskRunner` (needs the extra: `pip install 'procflow[dask]'`)."""

from .runners.dask import DaskResult, DaskTaskRunner

__all__ = ["DaskTaskRunner", "DaskResult"]
