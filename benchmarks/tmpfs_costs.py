"""What one 256 MB result costs in /dev/shm on this machine, step by step (no procflow).

Why the 256 MB, one-flow-run workload sits at ~3x its floor: every step below is paid by
the kernel for fresh tmpfs pages, whatever the engine does. Run:

    python benchmarks/tmpfs_costs.py [MEGABYTES]

and compare "create + two sums" (the floor) with the rest, and the copy a worker would
make to keep a result pristine in its own memory with the copy into a fresh segment.
"""

from __future__ import annotations

import mmap
import os
import sys
import time
from typing import Callable

import numpy as np

PATH = f"/dev/shm/tmpfs-costs-{os.getpid()}"


def best_ms(step: Callable[[], object], before: Callable[[], object] = lambda: None, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> int:
    size = int(sys.argv[1] if len(sys.argv) > 1 else 256) << 20
    array = np.ones(size // 8)
    raw = memoryview(array).cast("B")

    def remove() -> None:
        if os.path.exists(PATH):
            os.unlink(PATH)

    def new_file() -> int:
        fd = os.open(PATH, os.O_CREAT | os.O_RDWR, 0o600)
        os.ftruncate(fd, size)
        return fd

    def allocate() -> None:
        fd = new_file()
        os.posix_fallocate(fd, 0, size)
        os.close(fd)

    def write_fresh() -> None:
        fd = new_file()
        done = 0
        while done < size:
            done += os.pwrite(fd, raw[done:], done)
        os.close(fd)

    def map_and_sum() -> None:
        fd = os.open(PATH, os.O_RDONLY)
        mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        os.close(fd)
        np.frombuffer(mapping, dtype=np.float64).sum()
        del mapping

    rows = {
        "floor: create the array": best_ms(lambda: np.ones(size // 8)),
        "floor: one sum": best_ms(array.sum),
        "allocate fresh tmpfs pages (fallocate)": best_ms(allocate, remove),
        "write the array into a fresh segment (pwrite)": best_ms(write_fresh, remove),
    }
    kept: list[np.ndarray] = []  # each copy stays alive, as a kept future's value does: new pages every time
    rows["copy it into fresh anonymous memory, kept"] = best_ms(lambda: kept.append(array.copy()))
    kept.clear()
    write_fresh()
    rows["a consumer: map the segment and sum it"] = best_ms(map_and_sum)
    rows["unlink the segment (frees its pages)"] = best_ms(lambda: os.unlink(PATH), lambda: (remove(), allocate()))
    remove()
    for label, ms in rows.items():
        print(f"{label:48s} {ms:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
