"""The benchmark tasks and flows, in a module every worker can import."""

from __future__ import annotations

import time

import numpy as np

from procflow import task, unmapped


def noop(x):
    return x


def inc(x):
    return x + 1


def total(values):
    return sum(values)


def make_array(n):
    return np.ones(n)


def array_sum(array):
    return float(array.sum())


def spin(seconds):
    """Busy for `seconds`: a short CPU-bound run, as a parameter sweep's points are."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def array_sum_plus(array, i):
    return float(array.sum()) + i


noop_task, inc_task, total_task = task(noop, name="noop"), task(inc, name="inc"), task(total, name="total")
make_array_task, array_sum_task = task(make_array, name="make_array"), task(array_sum, name="array_sum")
array_sum_plus_task = task(array_sum_plus, name="array_sum_plus")
spin_task = task(spin, name="spin")


def spin_map_flow(n, seconds):
    return spin_task.map([seconds] * n)


def fanout_flow(n):
    parts = [noop_task.submit(i) for i in range(n)]
    return total_task.submit(parts)


def map_flow(n):
    return noop_task.map(range(n))


def chain_flow(n):
    value = inc_task.submit(0)
    for _ in range(n - 1):
        value = inc_task.submit(value)
    return value


def big_array_flow(n):
    array = make_array_task.submit(n)
    return [array_sum_task.submit(array) for _ in range(2)]


def flow_array_map_flow(array, n):
    """The flow's own array to every child of a map: `unmapped`."""
    return array_sum_plus_task.map(unmapped(array), range(n))


def big_array_rounds_flow(n, rounds):
    for _ in range(rounds):
        array = make_array_task.submit(n)
        sums = [array_sum_task.submit(array) for _ in range(2)]
        [s.result() for s in sums]
        del array, sums
