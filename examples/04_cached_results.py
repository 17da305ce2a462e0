"""Results that outlive the run: a slow step cached by its inputs, served from disk next time.

`cache_policy=INPUTS` keys each run by its arguments, and a keyed result persists in the
result store (`~/.procflow/storage`, or PROCFLOW_RESULTS_LOCAL_STORAGE_PATH). The flow runs
twice here: the second run is served from the cache. Run the script again and the first one
is too: the store outlives the process. `procflow cache ls` shows what is stored.
"""

import time
from datetime import timedelta

import numpy as np

from procflow import flow, task
from procflow.cache_policies import INPUTS


@task(cache_policy=INPUTS, cache_expiration=timedelta(days=1))
def simulate(seed: int, size: int = 2_000_000) -> np.ndarray:
    time.sleep(1.0)  # stands for a slow computation
    return np.random.default_rng(seed).standard_normal(size)


@task
def mean(values: np.ndarray) -> float:
    return float(values.mean())


@flow
def experiment(seeds: list[int]) -> list[float]:
    return [future.result() for future in mean.map(simulate.map(seeds))]


if __name__ == "__main__":
    for attempt in ("first", "second"):
        started = time.perf_counter()
        means = experiment([1, 2, 3, 4])
        run = experiment.last_run
        cached = sum(task_run.state.name == "Cached" for task_run in run.task_runs)
        print(f"{attempt} run: {time.perf_counter() - started:.2f} s, {cached} of 4 simulations served from "
              f"the cache, means {[round(m, 4) for m in means]}")
