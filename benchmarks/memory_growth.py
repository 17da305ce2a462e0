"""What memory costs when a program's footprint grows, against memory it frees and takes again.

A flow that keeps every stage's futures (the image pipeline keeps 3 x 64 results of 16 MB)
holds all their results until it returns, as Prefect does: its footprint grows by GBs. A
hand-fused chain frees each intermediate, and its next item takes the same pages again. On
a virtual machine whose host backs guest memory on first touch and takes freed memory back
within seconds, the two differ by an order of magnitude per page, in anonymous memory and
in /dev/shm alike (no engine involved). Run:

    python benchmarks/memory_growth.py [GIGABYTES]

and compare "kept" with "freed and taken again" per 16 MB block.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

BLOCK = 16 << 20


def _ms(step) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def anonymous(blocks: int, keep: bool) -> list[float]:
    kept, times = [], []
    for _ in range(blocks):
        array = np.empty(BLOCK // 4, np.float32)
        times.append(_ms(lambda: array.fill(1.0)))  # the first touch of each page
        if keep:
            kept.append(array)
    return times


def tmpfs(blocks: int, keep: bool) -> list[float]:
    data = memoryview(np.ones(BLOCK // 4, np.float32)).cast("B")
    paths, times = [], []
    try:
        for index in range(blocks):
            path = f"/dev/shm/memory-growth-{os.getpid()}-{index}"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                times.append(_ms(lambda: os.pwrite(fd, data, 0)))  # fresh tmpfs pages
            finally:
                os.close(fd)
            if keep:
                paths.append(path)
            else:
                os.unlink(path)
    finally:
        for path in paths:
            os.unlink(path)
    return times


def main() -> int:
    gigabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    blocks = int(gigabytes * (1 << 30) // BLOCK)
    print(f"{blocks} blocks of 16 MB ({gigabytes:g} GB); ms per block, median of the first and of the last quarter")
    for name, measure in (("anonymous memory", anonymous), ("/dev/shm (pwrite)", tmpfs)):
        for keep in (False, True):
            times = measure(blocks, keep)
            time.sleep(3)  # let the host take freed memory back, as between flow runs
            quarter = max(1, blocks // 4)
            label = "kept (footprint grows)" if keep else "freed and taken again"
            print(f"{name:18s} {label:24s} first {statistics.median(times[:quarter]):6.1f}  "
                  f"last {statistics.median(times[-quarter:]):6.1f}  total {sum(times) / 1000:5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
