"""Ray as a peer in the benchmarks, when it is installed: each workload as a Ray user writes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import workloads as w


class RayPeer:
    """A local Ray cluster with `workers` CPUs and the workloads' functions as remote tasks."""

    def __init__(self, workers: int) -> None:
        import ray  # ImportError: not installed, no Ray rows

        here = str(Path(__file__).resolve().parent)  # Ray's workers import `workloads` from here
        path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
        self.ray = ray
        self.noop, self.inc, self.total, self.make_array, self.array_sum, self.array_sum_plus = (
            ray.remote(fn) for fn in (w.noop, w.inc, w.total, w.make_array, w.array_sum, w.array_sum_plus))

    def fanout(self, n: int) -> Callable[[], Any]:
        get = self.ray.get
        return lambda: get(self.total.remote(get([self.noop.remote(i) for i in range(n)])))

    def mapped(self, n: int) -> Callable[[], Any]:
        return lambda: self.ray.get([self.noop.remote(i) for i in range(n)])

    def chain(self, n: int) -> Callable[[], Any]:
        def go():
            value = self.inc.remote(0)
            for _ in range(n - 1):
                value = self.inc.remote(value)  # an ObjectRef argument: Ray waits for it
            return self.ray.get(value)
        return go

    def big_array(self, n: int, rounds: int = 1) -> Callable[[], Any]:
        def go():
            for _ in range(rounds):
                array = self.make_array.remote(n)
                total = sum(self.ray.get([self.array_sum.remote(array) for _ in range(2)]))
                del array
            return total
        return go

    def flow_array_map(self, array: Any, children: int) -> Callable[[], Any]:
        def go():
            shared = self.ray.put(array)  # once in Ray's object store, as a Ray user would
            return self.ray.get([self.array_sum_plus.remote(shared, i) for i in range(children)])
        return go

    def close(self) -> None:
        self.ray.shutdown()


def start_ray(workers: int) -> RayPeer | None:
    try:
        return RayPeer(workers)
    except ImportError:
        return None
