"""One persisted result: a single file with a small header, the pickle, and its large buffers raw.

    b"PFRESULT" | u32 header length | u32 header CRC-32 | header (JSON) | pickle | buffers

Buffers (numpy arrays, bytes, Arrow columns: pickle 5's out-of-band split, as for shared
memory) start at 64-byte offsets. Reading maps the file copy-on-write (MAP_PRIVATE), so an
array comes back as a view of the page cache with no copy and no unpickling of its bytes; a
task that writes into it changes pages of its own, never the file nor another reader's view
(the same contract as results in shared memory, `shm_read.load_value`).

Writes go to a temporary name in the same directory and are renamed over the entry: a reader
sees a whole entry or none, a killed writer leaves only a temporary file (swept later), and two
processes writing one key both succeed, the last rename winning. A damaged entry (truncated,
overwritten, not ours) is found by `open_entry` from the sizes and CRC-32s in the header and
treated as missing. Buffers up to `FULL_CHECK_BYTES` are checked whole on every read; larger
ones by a fixed sample of 64 KiB pieces, so that a 1 GB result maps in milliseconds instead of
the 0.4 s a full CRC-32 costs (`procflow cache verify` checks them whole).
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import pickle
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

from ..ownership import random_part
from ..pickling import dumps_out_of_band
from ..states import LazyResult

MAGIC = b"PFRESULT"
FORMAT = 1
_PREFIX = struct.Struct("<8sII")  # magic, header length, header CRC-32
ALIGN = 64
OUT_OF_BAND_BYTES = 64 << 10  # buffers from this size are stored raw, outside the pickle
FULL_CHECK_BYTES = 16 << 20
SAMPLE_BYTES = 64 << 10
SAMPLES = 16
TEMPORARY = ".tmp-"


class Damaged(Exception):
    """An entry that is there but cannot be trusted: its text says why."""


class Header(NamedTuple):
    """What an entry's header says (`procflow cache ls` shows it)."""

    key: str
    task: str
    created: float
    expires: float | None  # time.time() after which it is not served
    duration: float  # seconds the run that made it took
    size: int  # of the whole file
    pickle: tuple[int, int, int]  # offset, size, CRC-32
    buffers: tuple[tuple[int, int, int, int], ...]  # offset, size, CRC-32 of the samples (whole when small), CRC-32

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and self.expires <= (time.time() if now is None else now)


class StoredResult(LazyResult):
    """A result in the store. The parent keeps only this; a consumer (a worker) maps the file."""

    __slots__ = ("path", "header", "_value", "_loaded")

    def __init__(self, path: str, header: Header) -> None:
        self.path, self.header = path, header
        self._loaded = False
        self._value: Any = None

    def load(self) -> Any:
        if not self._loaded:
            self._value = load_entry(self.path, self.header)
            self._loaded = True
        return self._value

    def reference(self) -> tuple[Any, ...]:
        """How it pickles as an argument: the entry, mapped where it is unpickled."""
        return (load_entry, (self.path, self.header))

    def __reduce__(self) -> tuple[Any, ...]:
        return (StoredResult, (self.path, self.header))


def write_entry(path: Path, key: str, task: str, value: Any, duration: float,
                expires: float | None) -> StoredResult:
    """Store `value` at `path` atomically, mode 0600. Raises OSError (full disk...) or a pickling error."""
    raws: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_BYTES:
            return True
        raws.append(raw)
        return False

    data = dumps_out_of_band(value, OUT_OF_BAND_BYTES, out_of_band)
    header, head = _layout(key, task, data, raws, duration, expires)
    partial = path.with_name(f"{TEMPORARY}{os.getpid()}-{random_part(8)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(fd, head)
        _write_all(fd, data)
        written = len(head) + len(data)
        for (offset, *_), raw in zip(header.buffers, raws, strict=True):
            _write_all(fd, bytes(offset - written))
            _write_all(fd, raw)
            written = offset + raw.nbytes
        os.close(fd)
        fd = -1
        os.replace(partial, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return StoredResult(str(path), header)


def _layout(key: str, task: str, data: bytes, raws: list[memoryview], duration: float,
            expires: float | None) -> tuple[Header, bytes]:
    """The header, with every offset: its own length decides where the pickle begins."""
    sizes = [raw.nbytes for raw in raws]
    checks = [_check(raw) for raw in raws]
    crcs = [check if raw.nbytes <= FULL_CHECK_BYTES else zlib.crc32(raw)
            for check, raw in zip(checks, raws, strict=True)]
    length = 0
    while True:  # the offsets' digits change the header's length: settle it
        start = _PREFIX.size + length
        offsets, end = [], start + len(data)
        for nbytes in sizes:
            end = -(-end // ALIGN) * ALIGN
            offsets.append(end)
            end += nbytes
        header = Header(key, task, time.time(), expires, duration, end, (start, len(data), zlib.crc32(data)),
                        tuple(zip(offsets, sizes, checks, crcs, strict=True)))
        text = json.dumps({"format": FORMAT, **header._asdict()}, separators=(",", ":")).encode()
        if len(text) == length:
            return header, _PREFIX.pack(MAGIC, length, zlib.crc32(text)) + text
        length = len(text)


def _check(view: memoryview | mmap.mmap, offset: int = 0, nbytes: int | None = None) -> int:
    """CRC-32 of a buffer: whole when small, else of `SAMPLES` pieces spread over it."""
    nbytes = len(view) - offset if nbytes is None else nbytes
    if isinstance(view, memoryview):
        view = view.cast("B")
    if nbytes <= FULL_CHECK_BYTES:
        return zlib.crc32(view[offset:offset + nbytes])
    crc, step = 0, (nbytes - SAMPLE_BYTES) // (SAMPLES - 1)
    for index in range(SAMPLES):
        start = offset + index * step
        crc = zlib.crc32(view[start:start + SAMPLE_BYTES], crc)
    return crc


def read_header(path: str) -> Header:
    """The entry's header, checked; Damaged when it cannot be trusted, OSError when it is not there."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return _header(fd)
    finally:
        os.close(fd)


def _header(fd: int) -> Header:
    """The header of the open entry file, checked (ours, whole, its own length)."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise Damaged("it is not this user's own file (or others may write it)")
    return _parsed_header(lambda nbytes, offset: os.pread(fd, nbytes, offset), info.st_size)


def _parsed_header(read: Callable[[int, int], bytes], size: int) -> Header:
    """The header of an entry of `size` bytes, read by `read(nbytes, offset)`, checked."""
    try:
        prefix = read(_PREFIX.size, 0)
        if len(prefix) < _PREFIX.size:
            raise Damaged("it is truncated")
        magic, length, crc = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise Damaged("it is not a procflow result")
        text = read(length, _PREFIX.size)
        if len(text) != length or zlib.crc32(text) != crc:
            raise Damaged("its header is damaged")
        fields = json.loads(text)
        if fields.pop("format", None) != FORMAT:
            raise Damaged("it was written by another version of procflow")
        header = Header(**{**fields, "pickle": tuple(fields["pickle"]),
                           "buffers": tuple(tuple(buffer) for buffer in fields["buffers"])})
        if size != header.size:
            raise Damaged(f"it is {size} bytes long, not {header.size}")
        return header
    except (ValueError, TypeError, KeyError) as error:
        raise Damaged(f"its header is damaged ({error})") from None


def load_bytes(content: bytes) -> tuple[Header, Any]:
    """An entry's header and value from its bytes, read elsewhere (Prefect's
    `ResultRecord.deserialize(storage.read_path(key))`); Damaged when they cannot be trusted."""
    view = memoryview(content)
    header = _parsed_header(lambda nbytes, offset: bytes(view[offset:offset + nbytes]), len(content))
    start, nbytes, crc = header.pickle
    if zlib.crc32(view[start:start + nbytes]) != crc:
        raise Damaged("its pickle is damaged")
    if header.buffers:
        view = memoryview(bytearray(content))  # arrays the caller may write to, as a mapped entry's
    return header, pickle.loads(view[start:start + nbytes],
                                buffers=[view[offset:offset + size] for offset, size, *_ in header.buffers])


def verify_entry(path: str, header: Header, whole: bool = False) -> None:
    """Check the pickle and the buffers against the header's CRC-32s (Damaged if one differs):
    samples of large buffers, or (`whole`) every byte."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size != header.size:
            raise Damaged("its size changed")
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    with mapping:
        start, nbytes, crc = header.pickle
        if zlib.crc32(memoryview(mapping)[start:start + nbytes]) != crc:
            raise Damaged("its pickle is damaged")
        for index, (offset, nbytes, check, crc) in enumerate(header.buffers):
            if whole:
                found, expected = zlib.crc32(memoryview(mapping)[offset:offset + nbytes]), crc
            else:
                found, expected = _check(mapping, offset, nbytes), check
            if found != expected:
                raise Damaged(f"its buffer {index} is damaged")


def load_entry(path: str, header: Header) -> Any:
    """The value, its buffers mapped copy-on-write from the file.

    The layout is read again from the file opened: another process may have renamed its own
    entry of the same key over this one since `header` was read (the same value, written at
    another time, so other offsets)."""
    with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as file:
        found = _header(file.fileno())
        if found.key != header.key:
            raise Damaged(f"{path} now holds the entry of another key")
        header = found
        start, nbytes, crc = header.pickle
        if not header.buffers:
            data = os.pread(file.fileno(), nbytes, start)
            if zlib.crc32(data) != crc:
                raise Damaged(f"{path}: its pickle is damaged")
            return pickle.loads(data)
        mapping = mmap.mmap(file.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = memoryview(mapping)
    if zlib.crc32(view[start:start + nbytes]) != crc:
        raise Damaged(f"{path}: its pickle is damaged")
    return pickle.loads(view[start:start + nbytes],
                        buffers=[view[offset:offset + size] for offset, size, *_ in header.buffers])


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def no_space(error: OSError) -> bool:
    """A full disk, a quota, or a file size limit (`ulimit -f`)."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

