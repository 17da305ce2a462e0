"""Reading out of shared memory: results and arguments, mapped copy-on-write, never tracked.

Both sides read: a worker maps its run's inputs (`load_arguments`, and `load_value` for an
upstream's result passed by reference), the parent maps a result on `.result()`. Every
read opens the name itself, checks that this user owns the segment (mode 0600,
`ownership.owns`) and maps it MAP_PRIVATE, so a reader's writes stay its own. A result
whose segment went to disk under memory pressure (`spill.py`) is read from its spill file
instead (`load_shared_or_spilled`). The writing side is `shm.py`.
"""

from __future__ import annotations

import mmap
import os
import pickle
from typing import Any

from .messages import Segment, SharedArguments
from .ownership import owns

try:  # cpython: multiprocessing.shared_memory is built on this module
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None


class SharedResultGone(RuntimeError):
    """A result's shared-memory segment was released before it was read."""


def load_value(data: bytes, segment: Segment | None, spans: tuple[tuple[int, int], ...]) -> Any:
    """Unpickle a result, mapping its segment copy-on-write (zero copy for arrays until written).

    Issue 16: Prefect hands a task a writable input (threads: the object; processes: a
    pickled copy), and in-place code such as `img -= img.mean()` failed on a read-only view.
    A private mapping (MAP_PRIVATE) gives each reader pages of its own only where it writes:
    the segment, and every other reader's view of it, never change.
    """
    if segment is None:
        return pickle.loads(data)
    view = private_view(segment)
    return pickle.loads(data, buffers=[view[offset:offset + nbytes] for offset, nbytes in spans])


def load_shared_or_spilled(data: bytes, segment: Segment | None, spans: tuple[tuple[int, int], ...],
                           spill: str | None) -> Any:
    """A result from its segment, or from its spill file when the segment went to disk."""
    try:
        return load_value(data, segment, spans)
    except SharedResultGone:
        if spill is None or not os.path.exists(spill):
            raise
    with open(spill, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as file:
        if os.fstat(file.fileno()).st_uid != os.geteuid():
            raise SharedResultGone(f"spill file {spill!r} is not this user's own: procflow does not read it")
        mapping = mmap.mmap(file.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = memoryview(mapping)
    return pickle.loads(data, buffers=[view[offset:offset + nbytes] for offset, nbytes in spans])


def load_arguments(arguments: bytes | SharedArguments) -> Any:
    """A run's `(args, kwargs)` in a worker. Buffers from the parent are mapped copy-on-write:
    the task gets writable arrays, as through the pipe, and what it writes stays its own."""
    if not isinstance(arguments, SharedArguments):
        return pickle.loads(arguments)
    return pickle.loads(arguments.data, buffers=[private_view(segment)[:size] for segment, size in arguments.buffers])


def private_view(segment: Segment) -> memoryview:
    """The segment copy-on-write: readable at once, writes private to this mapping.

    cpython#82300: on Python < 3.13, `SharedMemory(name)` registers an attached segment with
    the attaching process's resource tracker, which unlinks it (or warns about a leak) when
    that process exits; opening the name directly skips the tracker.

    No MAP_POPULATE: on a writable private mapping it copies every page up front (256 MB to
    two consumers went from 322 to 491 ms here). A fresh private mapping costs what a fresh
    shared one does (~42 ms of page faults for 256 MB); unlike a shared one it cannot be kept
    warm for the next run, which may see what this one wrote (issue 22 has the cost)."""
    fd = open_segment(segment, os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, segment.size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return memoryview(mapping)
    finally:
        os.close(fd)


def open_segment(segment: Segment, flags: int) -> int:
    """Open an existing segment of ours; a name someone else made since is refused."""
    try:
        fd: int = _posixshmem.shm_open("/" + segment.name, flags, 0)
    except FileNotFoundError:
        raise released(segment.name) from None
    if not owns(fd):
        os.close(fd)
        raise SharedResultGone(f"shared-memory segment {segment.name!r} is not this user's own (mode 0600): "
                               "procflow does not read it")
    return fd


def released(name: str) -> SharedResultGone:
    """The error of a read that came after the segment was given back."""
    return SharedResultGone(
        f"shared-memory segment {name!r} was already released: the future of that result was "
        "dropped or its flow run ended before the value was read; keep the future (or call "
        ".result()) while the flow runs")
