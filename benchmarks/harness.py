"""procflow benchmarks: each workload on procflow and on its peers, in the same run.

    python benchmarks/harness.py [--quick] [--only fan-out,chain] [--json out.jsonl]
    procflow bench [--quick] [--only fan-out,chain]

Prints a table of medians (the floor: its best time) and the ratio to raw loky (the code
a user would write by hand), and one JSON line per measurement. Speed targets are ratios,
never absolute times: the machines are shared and noisy. Peers that are not installed are
skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
from loky import get_reusable_executor
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads as w  # noqa: E402  (the task functions, importable by every worker)
from ray_peer import start_ray  # noqa: E402
from bytecode import compile_bytecode  # noqa: E402

from procflow import flow  # noqa: E402
from procflow.task_runners import ProcessPoolTaskRunner  # noqa: E402

WORKERS = 2
BASELINE = "raw loky"
FLOOR = "one process, no engine (lower bound)"  # the work itself, no engine: reported as its best time, a lower bound


class Peers:
    """Executors and clusters shared by the measurements, started once."""

    def __init__(self, without: frozenset[str] = frozenset()) -> None:
        """`without`: the peers not to start ("dask", "ray"): a cluster takes seconds to start."""
        self.loky = get_reusable_executor(max_workers=WORKERS, timeout=300)
        self.stdlib = ProcessPoolExecutor(max_workers=WORKERS)
        self.dask_client = None
        self.procflow_runner = ProcessPoolTaskRunner(max_workers=WORKERS)
        self.procflow_keeping_runner = ProcessPoolTaskRunner(max_workers=WORKERS, keep_segments_between_runs=True)
        self.dask_runner = None
        try:
            if "dask" in without:
                raise ImportError("left out")
            from distributed import Client, LocalCluster

            self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", host="127.0.0.1")
            self.dask_client = Client(self.cluster)
        except ImportError:
            pass
        try:
            from procflow.dask import DaskTaskRunner

            if self.dask_client is not None:
                self.dask_runner = DaskTaskRunner(address=self.cluster.scheduler_address)
        except ImportError:
            pass
        self.ray = None if "ray" in without else start_ray(WORKERS)

    def close(self) -> None:
        self.stdlib.shutdown()
        ProcessPoolTaskRunner.release_segments()
        if self.ray is not None:
            self.ray.close()
        if self.dask_client is not None:
            self.dask_client.close()
            self.cluster.close()


# -- workloads: each returns {engine: callable that runs it once} --------------------------


def fanout(peers: Peers, n: int) -> dict[str, Callable[[], object]]:
    def on_executor(executor):
        def go():
            parts = [executor.submit(w.noop, i) for i in range(n)]
            return executor.submit(w.total, [f.result() for f in parts]).result()
        return go

    def dask_distributed():
        client = peers.dask_client
        parts = [client.submit(w.noop, i, pure=False) for i in range(n)]
        return client.submit(w.total, parts).result()

    def dask_processes():
        import dask

        parts = [dask.delayed(w.noop)(i) for i in range(n)]
        return dask.delayed(w.total)(parts).compute(scheduler="processes", num_workers=WORKERS)

    engines = {"procflow": flow_call(w.fanout_flow, peers.procflow_runner, n), BASELINE: on_executor(peers.loky),
               "concurrent.futures": on_executor(peers.stdlib), "dask processes": dask_processes}
    return with_installed_peers(peers, engines, dask_distributed, (w.fanout_flow, n), lambda ray: ray.fanout(n))


def mapped(peers: Peers, n: int) -> dict[str, Callable[[], object]]:
    def on_executor(executor):
        return lambda: list(executor.map(w.noop, range(n)))

    engines = {"procflow": flow_call(w.map_flow, peers.procflow_runner, n), BASELINE: on_executor(peers.loky),
               "concurrent.futures": on_executor(peers.stdlib)}
    def dask_distributed():
        return peers.dask_client.gather(peers.dask_client.map(w.noop, range(n), pure=False))

    return with_installed_peers(peers, engines, dask_distributed, None, lambda ray: ray.mapped(n))


def chain(peers: Peers, n: int) -> dict[str, Callable[[], object]]:
    def on_executor(executor):
        def go():
            value = 0
            for _ in range(n):
                value = executor.submit(w.inc, value).result()
            return value
        return go

    def dask_distributed():
        value = 0
        for _ in range(n):
            value = peers.dask_client.submit(w.inc, value, pure=False)
        return value.result()

    engines = {"procflow": flow_call(w.chain_flow, peers.procflow_runner, n), BASELINE: on_executor(peers.loky),
               "concurrent.futures": on_executor(peers.stdlib)}
    return with_installed_peers(peers, engines, dask_distributed, (w.chain_flow, n), lambda ray: ray.chain(n))


def big_array(peers: Peers, megabytes: int, keep_segments: bool = False) -> dict[str, Callable[[], object]]:
    n = megabytes * 2**20 // 8
    runner = peers.procflow_keeping_runner if keep_segments else peers.procflow_runner

    def floor():
        array = w.make_array(n)
        return w.array_sum(array) + w.array_sum(array)

    def on_executor(executor):
        def go():
            array = executor.submit(w.make_array, n).result()
            return sum(f.result() for f in [executor.submit(w.array_sum, array) for _ in range(2)])
        return go

    def dask_distributed():
        client = peers.dask_client
        array = client.submit(w.make_array, n, pure=False)
        return sum(client.gather([client.submit(w.array_sum, array, pure=False) for _ in range(2)]))

    engines = {"procflow": flow_call(w.big_array_flow, runner, n), BASELINE: on_executor(peers.loky),
               FLOOR: floor}
    on_dask = None if keep_segments else (w.big_array_flow, n)
    return with_installed_peers(peers, engines, dask_distributed, on_dask, lambda ray: ray.big_array(n))


def big_array_kept(peers: Peers, megabytes: int) -> dict[str, Callable[[], object]]:
    """The same flow called again and again, on a runner that keeps freed segments."""
    return big_array(peers, megabytes, keep_segments=True)


def big_array_steady(peers: Peers, megabytes: int, rounds: int = 5) -> dict[str, Callable[[], object]]:
    """Several fan-outs in one flow run: freed segments are reused (the steady state)."""
    n = megabytes * 2**20 // 8

    def on_executor(executor):
        def go():
            for _ in range(rounds):
                array = executor.submit(w.make_array, n).result()
                sum(f.result() for f in [executor.submit(w.array_sum, array) for _ in range(2)])
                del array
        return go

    def floor():
        for _ in range(rounds):
            array = w.make_array(n)
            w.array_sum(array) + w.array_sum(array)
            del array

    def dask_distributed():
        client = peers.dask_client
        for _ in range(rounds):
            array = client.submit(w.make_array, n, pure=False)
            sum(client.gather([client.submit(w.array_sum, array, pure=False) for _ in range(2)]))
            del array

    engines = {"procflow": flow_call(w.big_array_rounds_flow, peers.procflow_runner, n, rounds),
               BASELINE: on_executor(peers.loky), FLOOR: floor}
    return with_installed_peers(peers, engines, dask_distributed, None, lambda ray: ray.big_array(n, rounds))


def flow_array_to_map(peers: Peers, megabytes: int, children: int = 8) -> dict[str, Callable[[], object]]:
    """An array the flow holds, passed whole to every child of a map (`unmapped`)."""
    array = np.ones(megabytes * 2**20 // 8)

    def on_executor(executor):
        def go():
            return [f.result() for f in [executor.submit(w.array_sum_plus, array, i) for i in range(children)]]
        return go

    def dask_distributed():
        client = peers.dask_client
        shared = client.scatter(array)  # what Dask's docs advise for a large local value
        return client.gather(client.map(w.array_sum_plus, [shared] * children, range(children), pure=False))

    engines = {"procflow": flow_call(w.flow_array_map_flow, peers.procflow_runner, array, children),
               BASELINE: on_executor(peers.loky), "concurrent.futures": on_executor(peers.stdlib)}
    return with_installed_peers(peers, engines, dask_distributed, (w.flow_array_map_flow, array, children),
                                lambda ray: ray.flow_array_map(array, children))


def with_installed_peers(peers: Peers, engines: dict[str, Callable[[], object]],
                         dask_distributed: Callable[[], object], on_dask: tuple | None,
                         ray: Callable[[Any], Callable[[], object]]) -> dict[str, Callable[[], object]]:
    """Add the peers that are installed: Dask used directly, the flow on procflow's Dask
    runner (`on_dask`: the flow function and its arguments), Ray."""
    if peers.dask_client is not None:
        engines["dask distributed"] = dask_distributed
    if peers.dask_runner is not None and on_dask is not None:
        engines["procflow on dask"] = flow_call(on_dask[0], peers.dask_runner, *on_dask[1:])
    if peers.ray is not None:
        engines["ray"] = ray(peers.ray)
    return engines


def flow_call(flow_fn, runner, *args):
    configured = flow(task_runner=runner, name=flow_fn.__name__)(flow_fn)
    return lambda: configured(*args)


# -- whole-process measurements -------------------------------------------------------------


def startup() -> dict[str, float]:
    """A 3-task flow in a fresh interpreter, pool start included."""
    code = textwrap.dedent("""
        import time
        t0 = time.perf_counter()
        from procflow import flow, task
        t1 = time.perf_counter()
        @task
        def one(x):
            return x
        @flow
        def three():
            a = one.submit(1)
            return [a, one.submit(a), one.submit(2)]
        three()
        t2 = time.perf_counter()
        print(t1 - t0, t2 - t1)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PROCFLOW_LOGGING_LEVEL="WARNING"))
    import_s, flow_s = (float(x) for x in done.stdout.split())
    return {"import": import_s, "first flow (pool start included)": flow_s}


def prefect_per_task(peers: Peers, n: int) -> dict[str, float] | None:
    """Prefect 3's process runner on a small fan-out, per task, beside procflow's (when installed).

    Prefect costs ~100 ms a task here, so its row is a 50-task fan-out, not 2 000.
    """
    try:
        from prefect import flow as prefect_flow
        from prefect import task as prefect_task
        from prefect.task_runners import ProcessPoolTaskRunner as PrefectProcessPool
    except ImportError:
        return None
    noop = prefect_task(w.noop)

    @prefect_flow(task_runner=PrefectProcessPool(max_workers=WORKERS))
    def prefect_fanout(count: int) -> int:
        return sum(f.result() for f in [noop.submit(i) for i in range(count)])

    procflow_fanout = flow_call(w.fanout_flow, peers.procflow_runner, n)
    prefect_fanout(n)  # warm up
    procflow_fanout()
    prefect_s = median_of(lambda: prefect_fanout(n), 3)
    procflow_s = median_of(procflow_fanout, 3)
    return {"prefect ms per task": prefect_s / n * 1000, "procflow ms per task": procflow_s / n * 1000,
            "procflow / prefect": procflow_s / prefect_s}


def many_runs_memory(peers: Peers, n: int) -> dict[str, float]:
    process = psutil.Process()
    small = flow_call(w.map_flow, peers.procflow_runner, 2_000)
    large = flow_call(w.map_flow, peers.procflow_runner, n)
    small()
    gc.collect()
    before = process.memory_info().rss
    start = time.perf_counter()
    large()
    large_s = time.perf_counter() - start
    peak_growth = process.memory_info().rss - before
    small_s = median_of(small, 3)
    return {"per-task cost ratio (100k / 2k)": (large_s / n) / (small_s / 2_000),
            "parent memory growth MB": peak_growth / 2**20, "seconds for 100k": large_s}


def parent_cpu_per_task(peers: Peers, n: int) -> dict[str, float]:
    """Issue 22, measured without a bar yet: the parent's CPU time per task (every thread of
    this process, workers excluded), a proxy for how many workers one parent can feed, for a
    `.submit()` loop of 2 000 and of `n` runs (full garbage collections over a growing heap
    made the large loop cost more per task), and for maps of 2 ms and 10 ms runs, where a
    message's fixed cost is paid every few runs instead of every few hundred."""
    small = flow_call(w.fanout_flow, peers.procflow_runner, 2_000)
    large = flow_call(w.fanout_flow, peers.procflow_runner, n)
    small()  # warm

    def cpu_per_task(run: Callable[[], object], count: int) -> float:
        gc.collect()
        start = time.process_time()
        run()
        return (time.process_time() - start) / count

    per_small = statistics.median(cpu_per_task(small, 2_000) for _ in range(3))
    per_large = cpu_per_task(large, n)
    short = {}
    for milliseconds in (2, 10):  # real runs, a message each or a few: the per-message cost shows
        spins = flow_call(w.spin_map_flow, peers.procflow_runner, 300, milliseconds / 1000)
        spins()
        short[f"parent CPU µs per task (map of 300 runs of {milliseconds} ms)"] = \
            statistics.median(cpu_per_task(spins, 300) for _ in range(3)) * 1e6
    return {"parent CPU µs per task (2k submits)": per_small * 1e6,
            f"parent CPU µs per task ({n // 1000}k submits)": per_large * 1e6,
            "tasks/s one parent can feed (2k)": 1 / per_small, "growth (large / 2k)": per_large / per_small, **short}


# -- harness ---------------------------------------------------------------------------------


def median_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(engines: dict[str, Callable[[], object]], repeats: int,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Each repeat runs every engine once, so drift and background load hit all alike.

    The floor is the exception: its best time, not its median. It runs in this process right
    after raw loky's 256 MB round trips, whose memory churn can make its fresh pages several
    times slower (50 ms quiet, up to 267 ms measured), and a floor that high would flatter
    every engine divided by it."""
    samples: dict[str, list[float]] = {engine: [] for engine in engines}
    for _ in range(repeats):
        for engine, run in engines.items():
            gc.collect()
            start = clock()
            run()
            samples[engine].append(clock() - start)
    return {engine: (min if engine == FLOOR else statistics.median)(times) for engine, times in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description="procflow benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--without", default="", help="comma-separated peers to leave out: dask, ray")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="JSON lines instead of the table (to FILE: appended, and the table too)")
    options = parser.parse_args()
    os.environ.setdefault("PROCFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PROCFLOW_END_SUMMARY", "0")  # the harness prints its own table
    logging.getLogger("distributed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Sending large graph")  # procflow on dask: the flow's array
    compile_bytecode(Path(__file__).resolve().parent)  # the workers this starts load compiled modules
    repeats = 3 if options.quick else 7
    megabytes = 64 if options.quick else 256
    workloads = {
        "fan-out/in 2000": (fanout, 2_000, 0.5),
        ".map() 2000": (mapped, 2_000, 0.35),
        "chain 200": (chain, 200, 1.0),
        f"{megabytes} MB to two consumers": (big_array, megabytes, 0.05),
        f"{megabytes} MB x5 in one flow": (big_array_steady, megabytes, None),
        f"{megabytes} MB, segments kept across runs": (big_array_kept, megabytes, None),
        f"{megabytes} MB from the flow to a map of 8": (flow_array_to_map, megabytes, None),
    }
    only = {name.strip() for name in options.only.split(",") if name.strip()}
    console = Console() if sys.stdout.isatty() else Console(width=150)  # a pipe: no wrapping at 80 columns
    peers = Peers(frozenset(name.strip() for name in options.without.split(",") if name.strip()))
    rows = []
    try:
        for name, (build, size, target) in workloads.items():
            if only and not any(key in name for key in only):
                continue
            engines = build(peers, size)
            for run in engines.values():
                run()  # warm up: pools started, functions shipped
            times = interleaved_times(engines, repeats)
            base = times[BASELINE]
            for engine, seconds in times.items():
                row = {"workload": name, "engine": engine, "seconds": seconds,
                       "statistic": "best" if engine == FLOOR else "median", "ratio_to_loky": seconds / base,
                       "target": target if engine == "procflow" else None}
                rows.append(row)
                if options.json == "-":
                    print(json.dumps(row), flush=True)
        extra = {}
        if not only or "startup" in only:
            extra["start-up"] = startup()
        if not only or "prefect" in only:
            compared = prefect_per_task(peers, 50)
            if compared is not None:
                extra["Prefect 3, 50-task fan-out"] = compared
        if not only or "100k" in only:
            extra["100 000-task map"] = many_runs_memory(peers, 20_000 if options.quick else 100_000)
        if not only or "parent" in only:
            extra["parent CPU per task"] = parent_cpu_per_task(peers, 20_000 if options.quick else 100_000)
        if options.json == "-":
            for name, values in extra.items():
                print(json.dumps({"workload": name, **values}), flush=True)
    finally:
        peers.close()
    if options.json == "-":
        return 0
    table = Table(title=f"procflow benchmarks ({WORKERS} workers, {psutil.cpu_count()} cores, "
                        f"{psutil.virtual_memory().total / 2**30:.0f} GiB)",
                  caption=f"medians of {repeats} runs; the floor: the best of them")
    for column in ("workload", "engine", "median", "× raw loky", "goal"):
        table.add_column(column, justify="left" if column in ("workload", "engine") else "right", no_wrap=True)
    for row in rows:
        target = row["target"]
        mark = "" if target is None else (f"≤ {target}: met" if row["ratio_to_loky"] <= target
                                          else f"≤ {target}: not yet")
        table.add_row(row["workload"], row["engine"], f"{row['seconds'] * 1000:.1f} ms",
                      f"{row['ratio_to_loky']:.3f}", mark)
    console.print(table)
    for line in ("median: of the interleaved runs; for the lower bound (one process, no engine), its best run",
                 "× raw loky: the median over the same work written by hand on loky's executor, in the same run",
                 "goal: the ratio procflow aims for on that workload (met, or not yet)"):
        console.print(line, soft_wrap=True)
    for line in large_result_checks(rows):
        console.print(line, soft_wrap=True)
    for name, values in extra.items():
        console.print(f"[bold]{name}[/]: " + ", ".join(f"{k} = {v:.3f}" for k, v in values.items()), soft_wrap=True)
    if options.json:
        with open(options.json, "a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
    return 0


def large_result_checks(rows: list[dict]) -> list[str]:
    """Issue 3's other two targets, where a workload has them: within 2× the floor, faster than Dask."""
    by_workload: dict[str, dict[str, float]] = {}
    for row in rows:
        by_workload.setdefault(row["workload"], {})[row["engine"]] = row["seconds"]
    lines = []
    for workload, medians in by_workload.items():
        floor, dask = medians.get(FLOOR), medians.get("dask distributed")
        if floor is None or "procflow" not in medians:
            continue
        ours = medians["procflow"]
        line = (f"{workload}: procflow ÷ lower bound = {ours / floor:.2f} "
                f"(goal ≤ 2: {'met' if ours <= 2 * floor else 'not yet'})")
        if dask is not None:
            line += (f", procflow ÷ dask distributed = {ours / dask:.2f} "
                     f"(goal < 1: {'met' if ours < dask else 'not yet'})")
        lines.append(line)
    return lines


if __name__ == "__main__":
    sys.exit(main())
