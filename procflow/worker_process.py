"""A worker process's life beside its runs: its start, its watch on the parent, its scoreboard.

`start` is the pool's initializer: the worker ignores Ctrl-C (the parent decides), leads a
process group of its own (a crash or the guardian ends what its task started with one
killpg), starts the housekeeping thread, and runs the user's initializer. The scoreboard
is the file the parent reads after a crash: the run this worker is executing, and the
list of segments it made in its current batch (`runners/directory.py` reads both).
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import threading
import time

from .pickling import loads_function
from .shm import WarmMappings, keep_mappings_warm
from .shapes import Args

BOARD_FORMAT = "qd"  # the run id executing (0: none), when it started
BOARD_SIZE = struct.calcsize(BOARD_FORMAT)
MADE_PREFIX = "made-"  # the segments this worker created in its current batch (`directory.py`)


class Scoreboard:
    """This worker's two files in the parent's directory (0700): `<pid>` and `made-<pid>`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(os.path.join(directory, str(os.getpid())), flags, 0o600)
        try:
            os.write(fd, b"\0" * BOARD_SIZE)
            self._board = mmap.mmap(fd, BOARD_SIZE)
        finally:
            os.close(fd)
        self._made = os.open(os.path.join(directory, f"{MADE_PREFIX}{os.getpid()}"), flags | os.O_APPEND, 0o600)

    def running(self, run_id: int) -> None:
        """Before each run: a crash from now on is this run's."""
        struct.pack_into(BOARD_FORMAT, self._board, 0, run_id, time.time())

    def idle(self) -> None:
        struct.pack_into(BOARD_FORMAT, self._board, 0, 0, 0.0)

    def made(self, name: str) -> None:
        """A segment this batch created: the parent removes it if the batch never reports it."""
        os.write(self._made, f"{name}\n".encode())

    def batch_reported(self) -> None:
        """The outcomes name the segments made now."""
        os.ftruncate(self._made, 0)

    def close(self) -> None:
        os.close(self._made)


def start(parent_pid: int, pickled_initializer: bytes | None, initargs: Args) -> BaseException | None:
    """Set the process up, then run the user's initializer (pickled by `dumps_function`, so its
    traceback keeps its file's lines); returns its failure, which every run here then fails with."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides (it cancels
    # and stops the workers), so a worker must not end its run as a failure on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Our own process group: what a task starts is in it, so a crash or the guardian
    # (`runners.guardian`) ends them with one killpg.
    try:
        os.setpgid(0, 0)
    except OSError:  # pragma: no cover - a session leader already
        pass
    mappings = keep_mappings_warm()
    threading.Thread(target=_housekeeping, args=(parent_pid, mappings), daemon=True,
                     name="procflow-housekeeping").start()
    if pickled_initializer is None:
        return None
    name = "initializer"
    try:
        initializer = loads_function(pickled_initializer)
        name = getattr(initializer, "__qualname__", name)
        initializer(*initargs)
    except BaseException as error:  # noqa: BLE001 - a worker that died here, loky would start again, forever
        failure = RuntimeError(
            f"the worker initializer {name!r} failed in worker {os.getpid()}: {type(error).__name__}: {error}")
        failure.__cause__ = error
        return failure
    return None


def _exit_with_children() -> None:
    """The parent is gone: end the processes a running task started too, then this one."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    os._exit(0)


def _housekeeping(parent_pid: int, mappings: WarmMappings | None) -> None:
    """Twice a second: exit if the parent died; unmap segments the parent unlinked.

    A parent killed with SIGKILL cannot stop its workers, so they notice by themselves
    (PR_SET_PDEATHSIG would fire when the *thread* that spawned us exits, too early). The
    memory of an unlinked segment is freed only with its last mapping, so an idle worker
    must not keep one.
    """
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            _exit_with_children()
        if mappings is not None and len(mappings):
            mappings.sweep()
