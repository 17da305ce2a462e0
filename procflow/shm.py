"""Results in POSIX shared memory, the writing side: store with pickle 5, keep mappings warm.

Data flow of one large result (process runner):

    worker: store(value) -> pickle protocol 5; out-of-band buffers >= threshold are
            copied into one segment (a lent, recycled one when it fits) -> ResultRef
            (small pickle + segment name + spans) goes back through the pipe
    parent: keeps the ResultRef as the run's state data; never reads the bytes
    worker: a downstream's argument is pickled by the parent as `load_value(ref)`,
            so unpickling the arguments maps the segment copy-on-write (MAP_PRIVATE): zero
            copy until the task writes, and its writes stay its own
    parent: `.result()` maps it the same way; when the run's future is gone and no
            pending run needs it, the segment goes back to the pool (or is unlinked)

`WarmMappings` keeps a worker's shared mappings of pooled segments for writing results
into them at memory speed; reads always take a private mapping of their own.

The other way, arrays the flow passes to tasks: the parent writes their buffers to
segments (`runners/segments.ArgumentSegments`), a run's message carries `SharedArguments`,
and the worker maps them copy-on-write (`load_arguments`). Every read is in `shm_read.py`.

Segment names are `procflow-<owner token>-<67 random bits>` (`ownership.py`, issue 15):
at most 30 characters (macOS's limit), never predictable, created with O_EXCL and mode
0600; an existing name is opened only when this user owns it 0600. The owner is the
parent; its side (the pool) is in `shm_pool.py`, the sweep of dead owners in `ownership.py`.
"""

from __future__ import annotations

import mmap
import os
import pickle
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable

import psutil

from .messages import Segment
from .ownership import PREFIX, SHM_DIR, owns, segment_name
from .pickling import dumps_fast, dumps_out_of_band, wrap_large_buffers
from .shm_read import load_shared_or_spilled, load_value, released
from .states import LazyResult

try:  # cpython: multiprocessing.shared_memory is built on this module
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

__all__ = ["PREFIX", "SHM_DIR"]  # re-exported: where segments live and how their names begin
ALIGN = 64
# Leave this much of /dev/shm free for everyone else; a result that would eat into it
# takes the pipe instead (PROCFLOW_SHM_RESERVE_BYTES overrides, tests use it).
DEFAULT_RESERVE = 64 << 20


class ResultRef(LazyResult):
    """A pickled result whose large buffers live in one shared-memory segment (or none)."""

    __slots__ = ("data", "segment", "spans", "fell_back", "released", "spill", "spilled", "_value", "_loaded",
                 "__weakref__")

    def __init__(self, data: bytes, segment: Segment | None = None,
                 spans: tuple[tuple[int, int], ...] = (), fell_back: bool = False) -> None:
        self.data = data
        self.segment = segment
        self.spans = spans
        self.fell_back = fell_back
        self.released = False  # its segment went back to the pool: another result may fill it
        self.spill: str | None = None  # where it goes if memory runs short (`spill.py`)
        self.spilled = False  # it is there now, and its segment is gone
        self._loaded = False
        self._value: Any = None

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(size for _, size in self.spans)

    def load(self) -> Any:
        if not self._loaded:
            if self.released:
                raise released(self.segment.name if self.segment else "?")
            if self.spill is not None:  # spilled to disk, or it may be by now
                self._value = load_shared_or_spilled(self.data, self.segment, self.spans, self.spill)
            else:
                self._value = load_value(self.data, self.segment, self.spans)
            self._loaded = True
        return self._value

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def holds_storage(self) -> bool:
        return self.segment is not None

    def reference(self) -> tuple[Any, ...] | None:
        """By reference while the segment lives, also when the parent has read it: the worker's
        copy-on-write mapping must not see what the parent wrote into its own (issue 16).
        A small result (no segment) goes as its stored bytes too: the parent neither unpickles
        nor pickles it again, and a result that cannot load fails in the consumer, as a load."""
        if self.released:
            return None
        if self.spill is not None:  # its segment may go to disk before the worker maps it
            return (load_shared_or_spilled, (self.data, self.segment, self.spans, self.spill))
        return (load_value, (self.data, self.segment, self.spans))

    def __reduce__(self) -> tuple[type[ResultRef], tuple[Any, ...]]:
        return (ResultRef, (self.data, self.segment, self.spans, self.fell_back))


# -- worker side: storing ----------------------------------------------------------

class SharedMemoryError(OSError):
    """A result that pickles could not be written to shared memory (I/O error, permission)."""


class SegmentWriter:
    """Worker side: turns results into ResultRefs, writing large buffers to segments.

    `record(name)` is told each new segment's name before it exists, so that the parent
    can remove what a worker made and never reported if the worker dies (`RunDirectory`).
    """

    def __init__(self, owner: str, record: Callable[[str], None] | None = None) -> None:
        self.owner = owner
        self._record = record
        self.reserve = int(os.environ.get("PROCFLOW_SHM_RESERVE_BYTES", DEFAULT_RESERVE))

    def store(self, value: Any, threshold: int, lent: list[Segment]) -> ResultRef:
        kind = type(value)
        if kind is int or kind is float or kind is bool or value is None:
            return ResultRef(pickle.dumps(value, protocol=5))
        buffers: list[pickle.PickleBuffer] = []

        def keep(buffer: pickle.PickleBuffer) -> bool:
            if buffer.raw().nbytes >= threshold:
                buffers.append(buffer)
                return False  # out of band
            return True

        try:  # C pickle first: arrays go out of band, and large bytes-like ones once wrapped
            data = dumps_fast(wrap_large_buffers(value, threshold), keep)
        except (pickle.PicklingError, AttributeError, TypeError):
            data = b""
        if not data or len(data) >= threshold:
            buffers.clear()
            data = dumps_out_of_band(value, threshold, keep)
        if not buffers:
            return ResultRef(data)
        try:
            written = self.write_buffers([buffer.raw() for buffer in buffers], lent)
        except OSError as error:  # not a problem of the value: say what the system said
            raise SharedMemoryError(f"could not write it to {SHM_DIR}: {type(error).__name__}: {error}") from error
        if written is None:  # no room in /dev/shm: the pipe carries the buffers in band
            return ResultRef(dumps_out_of_band(value, threshold, None), fell_back=True)
        return ResultRef(data, *written)

    def write_buffers(self, raws: list[memoryview],
                      lent: list[Segment]) -> tuple[Segment, tuple[tuple[int, int], ...]] | None:
        """The buffers one after another in one segment (a lent one when it fits): the
        segment and each buffer's (offset, size); None when /dev/shm lacks the room."""
        spans, offset = [], 0
        for raw in raws:
            spans.append((offset, raw.nbytes))
            offset += _aligned(raw.nbytes)
        segment, fresh = self._choose(offset, lent)
        if segment is None:
            return None
        written = self._write(segment, fresh, raws, spans)
        return None if written is None else (written, tuple(spans))

    def _write(self, segment: Segment, fresh: bool, raws: list[memoryview],
               spans: list[tuple[int, int]]) -> Segment | None:
        for _ in range(8):  # a fresh name that exists already (guessed, or planted): another name
            if fresh:
                self._announce(segment.name)
            try:
                return segment if _write(segment, fresh, raws, spans) else None
            except (FileExistsError, PermissionError):  # PermissionError: a lent name not ours 0600
                segment, fresh = segment._replace(name=segment_name(self.owner)), True
        return None

    def _announce(self, name: str) -> None:
        if self._record is not None:
            self._record(name)

    def prepare(self, sizes: Iterable[int]) -> list[Segment]:
        """New segments for the large results a batch is expected to make (the parent saw
        these functions make them before), their pages allocated by a thread while the
        tasks compute: allocating fresh tmpfs pages is most of the cost of filling a new
        segment (~60 of ~95 ms for 256 MB here)."""
        prepared = []
        for size in sizes:
            segment = self._new_segment(size)
            if segment is None:
                continue
            self._announce(segment.name)
            try:
                fd = _posixshmem.shm_open("/" + segment.name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            except OSError:
                continue
            try:
                os.ftruncate(fd, segment.size)
            except OSError:
                os.close(fd)
                unlink(segment.name)
                continue
            threading.Thread(target=_allocate_pages, args=(fd, segment.size), daemon=True,
                             name="procflow-prepare-segment").start()
            prepared.append(segment)
        return prepared

    def _choose(self, nbytes: int, lent: list[Segment]) -> tuple[Segment | None, bool]:
        """A lent segment that fits, or a new one (fresh: True)."""
        fitting = [segment for segment in lent if nbytes <= segment.size <= 2 * nbytes + (1 << 20)]
        if fitting:
            segment = min(fitting, key=lambda s: s.size)
            lent.remove(segment)
            return segment, False
        return self._new_segment(size_class(nbytes)), True

    def _new_segment(self, size: int) -> Segment | None:
        """A name for a new segment of `size` bytes, or None when /dev/shm lacks the room."""
        if shm_free_bytes() - size < self.reserve:
            if _warm is None or not len(_warm):
                return None
            _warm.sweep()  # unlinked segments this worker still maps hold room until let go
            if shm_free_bytes() - size < self.reserve:
                return None
        return Segment(segment_name(self.owner), size)


def _allocate_pages(fd: int, size: int) -> None:
    """Allocate a new segment's pages (a writer waits on the file's lock until done)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        pass  # no room after all: the write meets ENOSPC and the result takes the pipe
    finally:
        os.close(fd)


def _write(segment: Segment, fresh: bool, raws: list[memoryview], spans: list[tuple[int, int]]) -> bool:
    """Write the buffers; False (and nothing left behind) when /dev/shm runs out of room.
    A fresh segment is created with O_EXCL (FileExistsError if the name is taken); a lent
    one must be this user's, mode 0600 (only then can it be one this process made).

    Through this worker's warm mapping when it has one and the pages exist (memory speed).
    Otherwise pwrite, not a new mapping: into fresh tmpfs pages it runs about twice as fast
    (no zeroing before the copy), and a full /dev/shm answers ENOSPC instead of killing the
    writer with SIGBUS.
    """
    end = spans[-1][0] + spans[-1][1]
    mapping = _warm.writable(segment, end) if _warm is not None else None
    if mapping is not None:
        for raw, (offset, nbytes) in zip(raws, spans, strict=True):
            mapping[offset:offset + nbytes] = raw.cast("B")
        return True
    flags = os.O_CREAT | os.O_EXCL | os.O_RDWR if fresh else os.O_RDWR
    fd = _posixshmem.shm_open("/" + segment.name, flags, 0o600)
    try:
        if not fresh and not owns(fd):
            raise PermissionError(f"shared-memory segment {segment.name!r} is not this user's own (mode 0600)")
        if os.fstat(fd).st_size != segment.size:
            os.ftruncate(fd, segment.size)
        for raw, (offset, nbytes) in zip(raws, spans, strict=True):
            view, written = raw.cast("B"), 0
            while written < nbytes:
                written += os.pwrite(fd, view[written:], offset + written)
        if _warm is not None:
            _warm.keep(segment, fd)
        return True
    except PermissionError:
        raise  # not ours: left where it is
    except OSError:
        unlink(segment.name)
        return False
    finally:
        os.close(fd)


WARM_BYTES = 2 << 30  # at most this much of segments stays mapped in a worker


class WarmMappings:
    """Worker side: the segments this worker wrote stay mapped between runs, so a pooled one
    lent back to it takes the next result at memory speed.

    Readers map copy-on-write (`shm_read.py`) and keep nothing: a private mapping may hold a
    run's own writes. An entry is dropped once its name is unlinked or names another file
    (checked by inode on use and by `sweep()`), so a worker keeps freed memory only until
    the next sweep.
    """

    def __init__(self, max_entries: int = 8, max_bytes: int = WARM_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[int, mmap.mmap]] = OrderedDict()
        self._lock = threading.Lock()  # the worker's housekeeping thread sweeps too

    def keep(self, segment: Segment, fd: int) -> None:
        """A segment this worker has just written stays mapped (no page is touched yet): when
        the pool lends it back here, the next result goes in at memory speed through the
        mapping instead of through `pwrite` (64 MB: ~6 against ~19 ms here)."""
        try:
            mapping, inode = mmap.mmap(fd, segment.size), os.fstat(fd).st_ino
        except OSError:
            return
        with self._lock:
            self._entries[segment.name] = (inode, mapping)
            self._entries.move_to_end(segment.name)
            self._evict()

    def writable(self, segment: Segment, nbytes: int) -> mmap.mmap | None:
        """This worker's mapping of `segment`, when its first `nbytes` are already allocated.

        Writing only into allocated pages (ours are filled from the start) cannot meet a
        full /dev/shm, which through a mapping would be SIGBUS instead of ENOSPC.
        """
        with self._lock:
            entry = self._entries.get(segment.name)
        if entry is None:
            return None
        try:
            stat = os.stat(os.path.join(SHM_DIR, segment.name))
        except FileNotFoundError:
            return None
        return entry[1] if stat.st_ino == entry[0] and stat.st_blocks * 512 >= nbytes else None

    def sweep(self) -> None:
        """Let go of unlinked segments: their memory is freed with the last mapping."""
        with self._lock:
            entries = list(self._entries.items())
        for name, (inode, _) in entries:
            if _inode(name, missing=-1) != inode:
                with self._lock:
                    if self._entries.get(name, (None,))[0] == inode:
                        del self._entries[name]

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        total = sum(len(mapping) for _, mapping in self._entries.values())
        while self._entries and (len(self._entries) > self.max_entries or total > self.max_bytes):
            _, (_, mapping) = self._entries.popitem(last=False)
            total -= len(mapping)


_warm: WarmMappings | None = None


def keep_mappings_warm() -> WarmMappings | None:
    """Called once in each worker process: its loads and writes go through a WarmMappings."""
    global _warm
    if _warm is None and os.path.isdir(SHM_DIR):
        _warm = WarmMappings()
    return _warm


def _inode(name: str, missing: int) -> int:
    try:
        return os.stat(os.path.join(SHM_DIR, name)).st_ino
    except FileNotFoundError:
        return missing


def unlink(name: str) -> None:
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        pass


def shm_free_bytes() -> int:
    """Room left in /dev/shm, as psutil sees it (statvfs; a container's --shm-size)."""
    try:
        return int(psutil.disk_usage(SHM_DIR).free)
    except FileNotFoundError:  # pragma: no cover - no /dev/shm (macOS)
        return 1 << 62


def size_class(nbytes: int) -> int:
    """Round up to one of four steps per power of two (at most 19% slack)."""
    if nbytes <= 1 << 16:
        return 1 << 16
    step = 1 << (nbytes.bit_length() - 3)
    return -(-nbytes // step) * step


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN
