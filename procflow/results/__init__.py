"""Results that outlive the run: the store on disk (`store.py`) and its entries (`entries.py`)."""

from ..messages import Persist
from .entries import StoredResult
from .store import storage_directory

__all__ = ["Persist", "StoredResult", "storage_directory"]
