"""When stored results are freed: the future is gone, or the flow run ended.

A result kept outside the parent (a shared-memory segment, data on a Dask worker) is
held while its future lives: pending downstream runs keep the future in their
arguments, and the user keeps it in a variable. When the last reference goes, a
`weakref.finalize` frees it at once; when the flow run ends, what is still held is
mapped into the parent first (the mapping outlives the segment's name), then freed.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from .states import LazyResult


class HeldResults:
    """The stored results of one flow run, by run id."""

    def __init__(self, release: Callable[[LazyResult], None]) -> None:
        self._release = release
        self._held: dict[int, tuple[weakref.finalize[Any, Any], LazyResult]] = {}
        self.bytes = 0  # what is held now, as stored
        self.peak = 0  # the most held at once (the end summary's and report's "held at peak")

    def hold(self, run_id: int, future: Any | None, result: LazyResult) -> None:
        """Keep `result` while `future` lives (free it now when nobody can read it)."""
        if future is None:
            self._release(result)
            return
        self._held[run_id] = (weakref.finalize(future, self._drop, run_id), result)
        self.bytes += result.nbytes
        self.peak = max(self.peak, self.bytes)

    def _drop(self, run_id: int) -> None:
        held = self._held.pop(run_id, None)  # any thread: the one that dropped the future
        if held is not None:
            self.bytes -= held[1].nbytes
            self._release(held[1])

    def close(self) -> None:
        """The flow run ended: map what users still hold, then free everything."""
        for run_id in list(self._held):
            held = self._held.pop(run_id, None)
            if held is None:
                continue
            finalizer, result = held
            if finalizer.detach() is not None:  # the user still holds the future
                try:
                    result.load()
                except Exception:  # noqa: BLE001 - a result that cannot load raises on .result()
                    pass
            self._release(result)

    def results(self) -> list[LazyResult]:
        return [result for _, result in list(self._held.values())]

    def __len__(self) -> int:
        return len(self._held)
