"""Results that outlive the run: the store on disk (`store.py`) and its entries (`entries.py`)."""

from ..messages import Persist
from .entries import StoredResult
from .result_store import ResultRecord, ResultRecordMetadata, ResultStore
from .store import storage_directory

__all__ = ["Persist", "ResultRecord", "ResultRecordMetadata", "ResultStore", "StoredResult", "storage_directory"]
