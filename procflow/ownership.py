"""What this process owns on the machine, how it names it, and the sweep of what dead owners left.

Issue 15: names that other local users (a shared server, an HPC login node) can predict
let them pre-create our files, read or alter our results, or run code as us. So:

- Every process that uses the process runner is an *owner* with a random token (7 base-36
  characters). It holds an exclusive `flock` on `/dev/shm/procflow-<token>.lock` for its
  whole life. A lock, unlike a pid, says "alive" across PID namespaces that share
  `/dev/shm` (the containers of one pod, `docker --ipc=host`) and cannot be fooled by pid
  reuse: the kernel drops it when the owner dies, however it dies.
- Its segments are `procflow-<token>-<13 random base-36 characters>` (67 random bits;
  30 characters in all, macOS's limit), created with `O_EXCL`, mode 0600. A name that
  exists is never opened for writing unless this user owns it with mode 0600 (the pool's
  recycled segments, which only we can have made: `/dev/shm` is sticky).
- Its private directory (scoreboards, task pickles) is `mkdtemp()` under `TMPDIR`: random,
  0700, with its own lock file inside, since `TMPDIR` and `/dev/shm` need not be shared alike.
- `sweep()`, at every runner start: one `listdir` of `/dev/shm` and of `TMPDIR`; for each
  other owner whose lock it can take (or whose lock is gone), it removes that owner's
  entries, but only those of this user; any other name is left alone, whatever it looks like.
  Among them are the loky semaphores it noted in its directory (`note_semaphores`).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time

PREFIX = "procflow-"
SHM_DIR = "/dev/shm"
TOKEN_CHARS = 7
RANDOM_CHARS = 13  # 36**13 > 2**67
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

# Only ASCII [a-z0-9]: `\d` would accept '²', and int() would then fail on it.
_SHM_NAME = re.compile(rf"^procflow-([a-z0-9]{{{TOKEN_CHARS}}})(?:-[a-z0-9]{{{RANDOM_CHARS}}}|(\.lock))$")
_RUN_DIR_NAME = re.compile(rf"^procflow-([a-z0-9]{{{TOKEN_CHARS}}})-[A-Za-z0-9_]+$")
_LOCK_IN_DIR = "lock"
_SEMAPHORES_IN_DIR = "semaphores"
LOKY_SEMAPHORE = "sem.loky-"
_ORPHAN_DIR_SECONDS = 60.0  # a run directory without its lock this old was left mid-creation


def random_part(chars: int) -> str:
    """`chars` base-36 characters, uniformly random (log2(36) = 5.17 bits each)."""
    number, text = secrets.randbelow(36 ** chars), []
    for _ in range(chars):
        number, digit = divmod(number, 36)
        text.append(_DIGITS[digit])
    return "".join(text)


def segment_name(token: str) -> str:
    """A new segment name: unguessable, so nobody can pre-create it (and O_EXCL if they guess)."""
    return f"{PREFIX}{token}-{random_part(RANDOM_CHARS)}"


def owns(fd_or_stat: int | os.stat_result) -> bool:
    """This user made it, and nobody else may read or write it (mode 0600 or stricter)."""
    info = os.fstat(fd_or_stat) if isinstance(fd_or_stat, int) else fd_or_stat
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077


def create_file(path: str, data: bytes) -> None:
    """Write `path` whole, atomically, 0600: a temp name made with O_EXCL, then renamed.

    Only into our own 0700 directory, so the rename cannot replace anyone else's file.
    """
    partial = f"{path}.{random_part(8)}.tmp"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(partial, path)


class Owner:
    """This process's token, its held lock in /dev/shm, and its private directory."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._dir_lock: int | None = None
        self._dir: str | None = None
        self._semaphores_noted = ""
        self._lock = threading.Lock()
        self.token, self._shm_lock = self._claim_token()

    @staticmethod
    def _claim_token() -> tuple[str, int | None]:
        """A token nobody else holds, with its lock file already locked when it appears
        (made under a temp name, locked, then linked: a sweep never sees it unlocked)."""
        if not os.path.isdir(SHM_DIR):  # pragma: no cover - macOS: no listing, no sweep
            return random_part(TOKEN_CHARS), None
        for _ in range(100):
            token = random_part(TOKEN_CHARS)
            final = os.path.join(SHM_DIR, f"{PREFIX}{token}.lock")
            partial = os.path.join(SHM_DIR, f".{PREFIX}{token}.{random_part(RANDOM_CHARS)}")
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.link(partial, final)
            except OSError:  # the token is taken, or a sweep took our temp file: another token
                os.close(fd)
                continue
            finally:
                _remove(partial)
            return token, fd
        raise RuntimeError(f"procflow could not claim a lock file in {SHM_DIR} (100 tries): is it writable?")

    @property
    def directory(self) -> str:
        """The private directory, made again (a new name) if a tmp cleaner removed it."""
        with self._lock:
            if self._dir is None or not self._still_ours(self._dir):
                self._dir = self._make_directory()
            return self._dir

    def _still_ours(self, path: str) -> bool:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        return stat.S_ISDIR(info.st_mode) and owns(info) and os.path.exists(os.path.join(path, _LOCK_IN_DIR))

    def _make_directory(self) -> str:
        if self._dir_lock is not None:
            os.close(self._dir_lock)
        path = tempfile.mkdtemp(prefix=f"{PREFIX}{self.token}-")
        partial = os.path.join(path, f"{_LOCK_IN_DIR}.tmp")
        self._dir_lock = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._dir_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(partial, os.path.join(path, _LOCK_IN_DIR))
        return path

    def release(self) -> None:
        """At exit: our segments (a value already returned stays mapped), directory, locks."""
        for name in self.segments():
            _remove(os.path.join(SHM_DIR, name))
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._shm_lock is not None:
            _remove(os.path.join(SHM_DIR, f"{PREFIX}{self.token}.lock"))

    def segments(self) -> list[str]:
        return owned_segments(self.token)

    def note_semaphores(self) -> None:
        """Write the names of this process's loky semaphores (`sem.loky-<pid>-*`) into the
        private directory, for the sweep: when the resource tracker dies with us, nobody else
        removes them. Exact names, because a pid says nothing across PID namespaces."""
        prefix = f"{LOKY_SEMAPHORE}{os.getpid()}-"
        try:
            names = sorted(name for name in os.listdir(SHM_DIR) if name.startswith(prefix))
        except OSError:  # pragma: no cover - no /dev/shm (macOS)
            return
        text = "\n".join(names)
        with self._lock:
            if text == self._semaphores_noted:
                return
            self._semaphores_noted = text
        create_file(os.path.join(self.directory, _SEMAPHORES_IN_DIR), text.encode())


_owner: Owner | None = None
_owner_lock = threading.Lock()


def owner() -> Owner:
    """This process's owner, made on first use (and again in a forked child)."""
    global _owner
    with _owner_lock:
        if _owner is None or _owner.pid != os.getpid():
            _owner = Owner()
        return _owner


def current_token() -> str | None:
    """The token of this process, if it has one yet (no side effects)."""
    return _owner.token if _owner is not None and _owner.pid == os.getpid() else None


def owned_segments(token: str | None) -> list[str]:
    """The segment names of owner `token` in /dev/shm."""
    if token is None:
        return []
    prefix = f"{PREFIX}{token}-"
    try:
        return [name for name in os.listdir(SHM_DIR) if name.startswith(prefix) and _SHM_NAME.match(name)]
    except FileNotFoundError:  # pragma: no cover - no /dev/shm (macOS)
        return []


# -- the sweep -------------------------------------------------------------------------

def sweep() -> list[str]:
    """Remove what dead owners of this user left in /dev/shm and TMPDIR; returns what went."""
    mine = current_token()
    return _sweep_shm(mine) + _sweep_run_dirs(mine)


def _sweep_shm(mine: str | None) -> list[str]:
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    by_owner: dict[str, list[str]] = {}
    for name in names:
        match = _SHM_NAME.match(name)
        if match is None or match.group(1) == mine:
            continue
        entries = by_owner.setdefault(match.group(1), [])
        if not match.group(2):
            entries.append(name)
    swept: list[str] = []
    for token, segments in by_owner.items():
        lock_path = os.path.join(SHM_DIR, f"{PREFIX}{token}.lock")
        held = _take_lock(lock_path)
        if held is False:
            continue  # alive, or not ours
        try:
            for name in segments:
                if _remove_if_ours(os.path.join(SHM_DIR, name)):
                    swept.append(name)
            if held is not None:
                _remove_if_ours(lock_path)
        finally:
            if held is not None:
                os.close(held)
    return swept


def _sweep_run_dirs(mine: str | None) -> list[str]:
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    swept = []
    for name in names:
        match = _RUN_DIR_NAME.match(name)
        if match is None or match.group(1) == mine:
            continue
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or not owns(info):
            continue
        held = _take_lock(os.path.join(path, _LOCK_IN_DIR))
        if held is False:
            continue
        if held is None and _age(info) < _ORPHAN_DIR_SECONDS:
            continue  # being made right now, its lock not renamed into place yet
        try:
            swept += _remove_noted_semaphores(path)
            shutil.rmtree(path, ignore_errors=True)
            swept.append(path)
        finally:
            if held is not None:
                os.close(held)
    return swept


def _remove_noted_semaphores(run_dir: str) -> list[str]:
    """A dead owner's loky semaphores, by the names it noted (issue 19)."""
    try:
        with open(os.path.join(run_dir, _SEMAPHORES_IN_DIR), "rb") as file:
            names = file.read().decode("ascii").split()
    except (OSError, UnicodeDecodeError):
        return []
    return [name for name in names if name.startswith(LOKY_SEMAPHORE) and "/" not in name
            and _remove_if_ours(os.path.join(SHM_DIR, name))]


def _take_lock(path: str) -> int | None | bool:
    """The lock's fd, taken (its owner is dead); None when there is no lock file (dead, or
    never made); False when its owner is alive, or the file is not this user's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        if not owns(fd):
            os.close(fd)
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    return fd


def _remove_if_ours(path: str) -> bool:
    try:
        if os.lstat(path).st_uid != os.geteuid():
            return False  # root sweeping must not remove another user's files either
        os.unlink(path)
        return True
    except OSError:  # gone meanwhile, or not ours to remove: never a reason to fail a start
        return False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _age(info: os.stat_result) -> float:
    return time.time() - info.st_mtime
