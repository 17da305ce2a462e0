"""A small watcher process that ends our workers when this process dies without stopping them.

A worker notices its parent's death from a thread (`worker_process._housekeeping`), but a thread
needs the GIL: a task in C code that holds it (a backtracking regex, many extensions)
would keep the worker spinning for ever. `PR_SET_PDEATHSIG` is no cure: it fires when the
*thread* that forked the worker ends, and loky forks from whichever thread submits.

So the first pool of a process starts one guardian (`python -c`, standard library only,
~10 MB). It reads a pipe from us: each line is our private directory, whose scoreboards
(`<pid>` files) name the workers that ran something. End of file without `stop` means we
died (SIGKILL, the OOM killer, an unhandled signal): it SIGKILLs each worker's process
group (a worker leads its own, `worker_process.start`, so what its task started goes too),
then removes our loky semaphores if our resource tracker died with us, and sweeps our
segments, as the next start would. It has a session of its own and ignores SIGINT, SIGTERM
and SIGHUP, which a terminal or `kill -- -PGID` sends to the whole job: it must outlive us.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

_SCRIPT = r"""
import os, signal, sys, time
for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(number, signal.SIG_IGN)
parent, directory = os.getppid(), None
for line in sys.stdin.buffer:
    if line == b"stop\n":
        sys.exit(0)
    directory = os.fsdecode(line.rstrip(b"\n"))

def workers():
    try:
        return [int(name) for name in os.listdir(directory) if name.isdigit()]
    except (OSError, TypeError):
        return []

def is_loky_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return b"loky" in file.read()
    except OSError:
        return False

pids = workers()
for pid in pids:
    try:
        os.killpg(pid, signal.SIGKILL)  # the worker and what its task started
    except OSError:
        pass
    if is_loky_worker(pid):  # one that never got its own group
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
def semaphores():  # loky's resource tracker removes them, unless it died with the parent
    try:
        return [name for name in os.listdir("/dev/shm") if name.startswith(f"sem.loky-{parent}-")]
    except OSError:
        return []

deadline = time.monotonic() + 2
while any(is_loky_worker(pid) for pid in pids) and time.monotonic() < deadline:
    time.sleep(0.05)
deadline = time.monotonic() + 1
while semaphores() and time.monotonic() < deadline:
    time.sleep(0.05)
for name in semaphores():
    try:
        if os.lstat(f"/dev/shm/{name}").st_uid == os.geteuid():
            os.unlink(f"/dev/shm/{name}")
    except OSError:
        pass
try:
    import site
    site.main()  # started with -S: procflow's path only now, when it is needed
    from procflow.ownership import sweep
    sweep()
except Exception:
    pass
"""

NAME = "procflow-guardian"


class Guardian:
    """The watcher of one process; `watch(directory)` starts it or tells it a new directory."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[Any] | None = None
        self._pid = 0  # the process that started it: a forked child needs its own
        self._told: str | None = None
        self._lock = threading.Lock()

    def watch(self, directory: str) -> None:
        with self._lock:
            if self._process is None or self._pid != os.getpid() or self._process.poll() is not None:
                self._start()
            if directory != self._told:
                self._send(os.fsencode(directory) + b"\n")
                self._told = directory

    def stop(self) -> None:
        """A clean exit: our own cleanup ran, so it has nothing to do."""
        with self._lock:
            if self._process is not None and self._pid == os.getpid():
                self._send(b"stop\n")
                self._process = None

    def _start(self) -> None:
        # Nothing of ours kept open (a caller reading our stderr sees its end when we end).
        # -S: no site until the sweep needs procflow (its .pth files cost more than the script
        # itself, while the first workers start beside it).
        self._process = subprocess.Popen([sys.executable, "-S", "-c", _SCRIPT, NAME], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         close_fds=True, start_new_session=True)
        self._pid = os.getpid()
        self._told = None

    def _send(self, line: bytes) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(line)
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError):  # it was killed: the next watch() starts another
            self._process = None


GUARDIAN = Guardian()
