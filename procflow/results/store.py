"""The result store: a directory of entries (`entries.py`) found by key, that only this user can use.

Where it is: a task's `result_storage` (a `pathlib.Path`), else `PROCFLOW_RESULTS_LOCAL_STORAGE_PATH`,
`PREFECT_RESULTS_LOCAL_STORAGE_PATH` or `PREFECT_LOCAL_STORAGE_PATH` (that order), else
`~/.procflow/storage`. A flow run reads it when it starts and sends it with each run: workers
keep the environment they started with.

A pickle runs code when it loads, so the store trusts only what this user wrote: directories
it makes are 0700 and files 0600; a directory that others may write to, or that another user
owns, is not used (one warning, and runs go on without the cache); an entry file that is not
this user's is never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import settings
from ..messages import Persist
from ..runlog import TASK_LOGGER
from .entries import TEMPORARY, Damaged, Header, StoredResult, no_space, read_header, verify_entry, write_entry

DEFAULT_DIRECTORY = "~/.procflow/storage"
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
_STALE_TEMPORARY_SECONDS = 24 * 3600.0


def storage_directory(result_storage: Any = None) -> Path:
    """The directory results go to now (a task's `result_storage` wins)."""
    if result_storage is not None:
        return Path(os.fspath(result_storage)).expanduser()
    configured = settings.PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()
    return Path(configured if configured is not None else DEFAULT_DIRECTORY).expanduser()


def storage_path(owner: str, result_storage: Any) -> Path | None:
    """A local directory: a `pathlib.Path` (or a Prefect `LocalFileSystem(basepath=...)`).
    A plain string is a block name to Prefect; blocks live in Prefect's server, so it is refused."""
    if result_storage is None or isinstance(result_storage, Path):
        return result_storage
    basepath = getattr(result_storage, "basepath", None)
    if isinstance(basepath, (str, Path)):
        return Path(basepath).expanduser()
    if isinstance(result_storage, str):
        raise TypeError(f"{owner}: result_storage={result_storage!r} names a Prefect storage block, and blocks "
                        "live in Prefect's server, which procflow does not use: pass a local directory as a "
                        f"pathlib.Path, e.g. result_storage=Path({result_storage!r})")
    raise TypeError(f"{owner}: result_storage must be a local directory (a pathlib.Path), got {result_storage!r}")


def entry_path(directory: str | Path, key: str) -> Path:
    """Where the entry of `key` lives: the key itself when it is a plain relative path of safe
    names (a `result_storage_key` such as "reports/{parameters[day]}.pkl"), else a hash of it."""
    parts = key.split("/")
    if len(parts) <= 8 and all(_SAFE_PART.match(part) for part in parts):
        return Path(directory, *parts)
    return Path(directory, "key-" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest())


_lock = threading.Lock()
_checked: set[str] = set()  # directories found private in this process
_warned: set[tuple[str, str]] = set()


Warn = Callable[[str], None]


def _once(warn: Warn, directory: str, reason: str, text: str) -> None:
    """The warning about a store's directory, once per process (a full disk fails every write)."""
    with _lock:
        if (directory, reason) in _warned:
            return
        _warned.add((directory, reason))
    warn(text)


class UnsafeDirectory(Exception):
    """The store's directory is not this user's alone."""


def ensure_directory(directory: str | Path) -> Path:
    """Make the directory (0700, each missing parent too) or check it is safe to use; UnsafeDirectory if not."""
    path = Path(directory)
    text = str(path)
    if text in _checked:
        return path
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for part in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o700)
    _check_private(path)
    with _lock:
        _checked.add(text)
    return path


def _check_private(path: Path) -> None:
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o022:
        raise UnsafeDirectory(f"others may write to {path} (mode {stat.filemode(info.st_mode)}): "
                              "they could plant results that run code when loaded")


def lookup(directory: str, key: str, run_name: str) -> StoredResult | None:
    """The entry of `key` if it is there, whole, ours and not expired; a damaged one is a miss
    with one warning (the run computes it again and its entry replaces the damaged one)."""
    path = entry_path(directory, key)
    try:
        ensure_directory(directory)
        header = read_header(str(path))
        if header.expired():
            return None
        verify_entry(str(path), header)
    except FileNotFoundError:
        return None
    except UnsafeDirectory as error:
        _once(TASK_LOGGER.warning, directory, "unsafe", f"Results are not persisted nor read from the cache: {error}")
        return None
    except (Damaged, OSError) as error:
        TASK_LOGGER.warning(f"Task run '{run_name}' - The cached result at {path} cannot be used ({error}): "
                            "running the task again")
        return None
    return StoredResult(str(path), header)


def write(persist: Persist, value: Any, duration: float, run_name: str,
          warn: Warn = TASK_LOGGER.warning) -> StoredResult | None:
    """Store a run's result; None (and one warning, through `warn`: a worker sends it with the
    run's logs) when it cannot be: the run's result stands, only it is not cached."""
    try:
        directory = ensure_directory(persist.directory)
        path = entry_path(directory, persist.key)
        if path.parent != directory:
            ensure_directory(path.parent)
        _sweep_once(directory)
        return write_entry(path, persist.key, persist.task, value, duration, persist.expires)
    except UnsafeDirectory as error:
        _once(warn, persist.directory, "unsafe", f"Results are not persisted nor read from the cache: {error}")
    except OSError as error:
        if no_space(error):
            _once(warn, persist.directory, "full", f"Task run '{run_name}' - No room for results in "
                      f"{persist.directory}: results are not cached until there is ({error})")
        else:
            _once(warn, persist.directory, f"os-{error.errno}", f"Task run '{run_name}' - Could not persist "
                      f"its result in {persist.directory}: {type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - a result that cannot be pickled: not cached, still returned
        warn(f"Task run '{run_name}' - Its result cannot be persisted, so it is not cached: "
                            f"{type(error).__name__}: {error}")
    return None


_swept: set[str] = set()


def _sweep_once(directory: Path) -> None:
    """Remove temporary files that writers which died left (once per directory and process)."""
    text = str(directory)
    if text in _swept:
        return
    _swept.add(text)
    sweep_temporaries(directory)


def sweep_temporaries(directory: Path, everything: bool = False) -> int:
    removed = 0
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(directory) as found:
        for item in found:
            if not item.name.startswith(TEMPORARY):
                continue
            pid = item.name[len(TEMPORARY):].split("-", 1)[0]
            with contextlib.suppress(OSError, ValueError):
                if everything or not _alive(int(pid)) or now - item.stat().st_mtime > _STALE_TEMPORARY_SECONDS:
                    os.unlink(item.path)
                    removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def entries(directory: str | Path) -> Iterator[tuple[Path, Header | Damaged, int]]:
    """Every entry under the directory: (path, its header or why it is damaged, bytes on disk)."""
    for root, folders, files in os.walk(directory):
        folders.sort()
        for name in sorted(files):
            if name.startswith(TEMPORARY):
                continue
            path = Path(root, name)
            try:
                size = path.lstat().st_size
                header: Header | Damaged = read_header(str(path))
            except Damaged as damaged:
                header = damaged
            except OSError:
                continue
            yield path, header, size
