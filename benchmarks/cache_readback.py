"""A cached large array read back by a consumer task (issue 20), against the ways people do it.

    python benchmarks/cache_readback.py [--size-mb 1024] [--repeats 3]

In one run, for one array (float64, `--size-mb` of it):
- recompute: making the array again (what no cache costs);
- procflow: a flow whose `make` task is cached by INPUTS (the second run is served from the
  store) passes the array to a consumer task in a worker process, which maps the entry;
- joblib.Memory, without and with mmap_mode="r": the cached call in this process.

"delivery" is from asking for the array to the consumer holding it (a timestamp the consumer
takes itself); for procflow that includes a whole flow run. Each is the median of the repeats.
The page cache is warm for all of them (the entry was just written), as on a rerun.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from procflow import flow, task
from procflow.cache_policies import INPUTS
from procflow.task_runners import ProcessPoolTaskRunner


def make(n: int) -> np.ndarray:
    values = np.empty(n)
    values[:] = 1.5
    return values


@task(cache_policy=INPUTS)
def make_task(n: int) -> np.ndarray:
    return make(n)


@task
def consume(values: np.ndarray) -> tuple[float, float]:
    received = time.time()
    return received, float(values[0] + values[-1])


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def pipeline(n: int) -> tuple[float, float]:
    return consume.submit(make_task.submit(n)).result()


def median_seconds(measure, repeats: int) -> float:
    return statistics.median(measure() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    n = options.size_mb * (1 << 20) // 8
    where = Path(tempfile.mkdtemp(prefix="procflow-cache-bench-"))
    try:
        rows = run_all(n, where, options.repeats)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    floor = min(seconds for _, seconds in rows)
    print(f"\n{options.size_mb} MB float64 array; delivery: median of {options.repeats}, writes: once")
    print("| way | ms | x fastest |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / floor:.1f} |")


def run_all(n: int, where: Path, repeats: int) -> list[tuple[str, float]]:
    import os

    import joblib

    os.environ["PROCFLOW_RESULTS_LOCAL_STORAGE_PATH"] = str(where / "procflow")
    rows = [("recompute (no cache)", median_seconds(lambda: _timed(lambda: make(n)), repeats))]
    written = time.perf_counter()
    pipeline(n)  # computes and stores the entry
    writes = [("procflow: first run (computes, writes the entry)", time.perf_counter() - written)]

    def procflow_run() -> float:
        asked = time.time()
        received, _ = pipeline(n)
        return received - asked

    rows.append(("procflow: cached entry -> consumer task", median_seconds(procflow_run, repeats)))
    for mode in (None, "r"):
        memory = joblib.Memory(where / f"joblib-{mode}", verbose=0, mmap_mode=mode)
        cached = memory.cache(make)
        written = time.perf_counter()
        cached(n)
        name = f"joblib.Memory(mmap_mode={mode!r})"
        writes.append((f"{name}: first call (computes, writes)", time.perf_counter() - written))
        rows.append((name, median_seconds(lambda cached=cached: _timed(lambda: cached(n)), repeats)))
    return rows + writes


def _timed(call) -> float:
    start = time.perf_counter()
    value = call()
    _ = value[0] + value[-1]
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
