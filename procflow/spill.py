"""Spilling held results from /dev/shm to disk when shared memory or the machine's memory runs low.

A flow that holds its futures keeps their large results in /dev/shm until it returns (as
Dask and Prefect would keep them in memory). When /dev/shm's free space, or the memory
available to the machine, falls below `PROCFLOW_SPILL_BELOW_BYTES` (default: 10 % of
/dev/shm's size and 10 % of memory), the flow run's held results that the parent has not
mapped are copied, largest first, to files in a private directory of the result store
(`<store>/.spill-<random>`, 0700) until there is room again; then their segments are unlinked.
One log line says what went where. The copy is done by the kernel (`sendfile`), off the
engine's thread.

A reader never misses a spilled result: every reference to a result names its spill file
besides its segment (`ResultRef.spill`), the file is complete before the segment goes, and a
reader that finds no segment maps the file (copy-on-write, as the segment would be;
`shm_read.load_shared_or_spilled`). A spilled segment is unlinked, never pooled, so its
name never holds another value.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

import psutil

from .results.store import UnsafeDirectory, ensure_directory
from .runlog import FLOW_LOGGER
from .shm import SHM_DIR, ResultRef, shm_free_bytes, unlink


SPILL_LOCK = threading.Lock()  # a result is released or spilled, never both half-way


def forget_spilled(ref: ResultRef) -> None:
    if ref.spill is not None:
        with contextlib.suppress(OSError):
            os.unlink(ref.spill)


def spill_threshold() -> int:
    """Spill while free /dev/shm (or available memory) is below this many bytes."""
    configured = os.environ.get("PROCFLOW_SPILL_BELOW_BYTES")
    if configured is not None:
        return int(configured)
    try:
        return int(psutil.disk_usage(SHM_DIR).total * 0.10)
    except FileNotFoundError:  # pragma: no cover - no /dev/shm
        return 0


class Spiller:
    """The spill directory and thread of one flow run."""

    def __init__(self, flow_run_name: str, store: Path) -> None:
        self._flow_run_name = flow_run_name
        self._store = store
        self._directory = store / f".spill-{secrets.token_hex(8)}"  # made at the first spill, 0700
        self._made = False
        self._lock = threading.Lock()
        self._busy = False

    def place(self, result: ResultRef) -> None:
        """Name where `result` would be spilled, before any reference to it is sent."""
        if result.segment is not None:
            result.spill = str(self._directory / result.segment.name)

    def check(self, held_results: Callable[[], list[Any]]) -> None:
        """Spill, in a thread, when memory is short (one spill at a time)."""
        threshold = spill_threshold()
        if threshold <= 0 or not _short(threshold):
            return
        with self._lock:
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._spill, args=(held_results, threshold), name="procflow-spill",
                         daemon=True).start()

    def _spill(self, held_results: Callable[[], list[Any]], threshold: int) -> None:
        """Largest first, while memory is short; results held meanwhile are taken too."""
        moved, nbytes, failed = 0, 0, 0
        try:
            if not self._made:
                try:
                    ensure_directory(self._store)
                    os.mkdir(self._directory, 0o700)
                except (OSError, UnsafeDirectory) as error:
                    FLOW_LOGGER.warning(f"Flow run '{self._flow_run_name}' - Memory is short, and results cannot be "
                                        f"spilled to {self._store}: {error}")
                    return
                self._made = True
            while _short(threshold):
                spillable = [ref for ref in held_results() if isinstance(ref, ResultRef) and _spillable(ref)]
                if not spillable:
                    break
                ref = max(spillable, key=lambda ref: ref.segment.size)  # type: ignore[union-attr]
                if _spill_one(ref):
                    moved += 1
                    nbytes += ref.segment.size  # type: ignore[union-attr]
                else:
                    failed += not (ref.released or ref.loaded)  # no room on disk, most likely
                    ref.spill = None  # not spillable after all: do not try it again
        finally:
            with self._lock:
                self._busy = False
        if failed:
            FLOW_LOGGER.warning(f"Flow run '{self._flow_run_name}' - Memory is short, and {failed} held results "
                                f"could not be spilled to {self._directory}")
        if moved:
            FLOW_LOGGER.info(f"Flow run '{self._flow_run_name}' - Memory was short ({shm_free_bytes() >> 20} MB free "
                             f"in {SHM_DIR}): spilled {moved} held results ({nbytes >> 20} MB) to {self._directory}")

    def close(self) -> None:
        if self._made:
            shutil.rmtree(self._directory, ignore_errors=True)


def _short(threshold: int) -> bool:
    return shm_free_bytes() < threshold or psutil.virtual_memory().available < threshold


def _spillable(ref: ResultRef) -> bool:
    return ref.segment is not None and ref.spill is not None and not (ref.loaded or ref.released or ref.spilled)


def _spill_one(ref: ResultRef) -> bool:
    """Copy the segment to its spill file (whole before it is named), then unlink the segment."""
    assert ref.segment is not None and ref.spill is not None
    partial = ref.spill + ".partial"
    try:
        source = os.open(os.path.join(SHM_DIR, ref.segment.name), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False  # released meanwhile
    try:
        target = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            offset, size = 0, ref.segment.size
            while offset < size:  # in the kernel (tmpfs to another file system: no copy_file_range)
                sent = os.sendfile(target, source, offset, size - offset)
                if sent == 0:
                    raise OSError(f"{ref.segment.name}: the segment ended at {offset} of {size} bytes")
                offset += sent
        finally:
            os.close(target)
        os.replace(partial, ref.spill)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        return False
    finally:
        os.close(source)
    with SPILL_LOCK:
        if ref.released or ref.loaded:  # the run's future went, or the parent mapped it, meanwhile
            forget_spilled(ref)
            return False
        ref.spilled = True
    unlink(ref.segment.name)
    return True
