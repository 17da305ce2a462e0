"""The three real batch workloads (issue 22) on procflow and on the peers a user would pick.

    python benchmarks/real_workloads.py [--rounds 3] [--only images,etl] [--json]
    procflow bench --workloads [--quick]

`benchmarks/real/` holds them as their users write them (a copy of the project's shared
workloads): science in `*_core.py`, the Prefect-style flow (a task per stage) in
`*_flow.py`, one function per (workload, engine) in `engines.py`. Each measurement is one
engine's call in a fresh interpreter (its own pool start included, as a script pays it),
engines interleaved round by round, every engine on 2 workers. The table gives medians and
each engine's ratio to the best peer that fuses the whole per-item chain into one call (the
bar: a task per stage at most 1.05x that). Needs numpy, scipy, pandas, pyarrow, joblib,
dask[distributed] (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bytecode import compile_bytecode

HERE = Path(__file__).resolve().parent / "real"
# workload -> engines: (function in engines.py, what it is, fused chain?)
ENGINES = {
    "sweep": [("sweep_procflow", "procflow, a task per point", False), ("sweep_joblib", "joblib", True),
              ("sweep_cf", "concurrent.futures", True), ("sweep_dask", "Dask distributed", True)],
    "images": [("images_procflow", "procflow, a task per stage", False),
               ("images_procflow_fused", "procflow, chain fused by hand", True),
               ("images_joblib", "joblib, chain in one call", True),
               ("images_cf", "concurrent.futures, chain in one call", True),
               ("images_joblib_staged", "joblib, Parallel per stage", False),
               ("images_dask", "Dask distributed", True),
               # Not peers: as procflow runs (spawned workers), then keeping what the flow keeps.
               ("images_cf_spawn", "concurrent.futures, spawned workers", True),
               ("images_cf_spawn_keeping", "  and each keeping the intermediates", True)],
    "etl": [("etl_procflow", "procflow, a task per stage", False), ("etl_joblib", "joblib", True),
            ("etl_cf", "concurrent.futures", True), ("etl_dask", "Dask distributed", True),
            # Not peers: concurrent.futures as procflow runs (spawned workers), then keeping what the flow keeps.
            ("etl_cf_spawn", "concurrent.futures, spawned workers", True),
            ("etl_cf_spawn_keeping", "  and each keeping its extracted frames", True)],
}
PEERS_FUSED = {"sweep_joblib", "sweep_cf", "images_joblib", "images_cf", "etl_joblib", "etl_cf"}


def run_once(function: str, out: str) -> float | None:
    """Seconds for one call of `engines.<function>()` in a fresh interpreter; None if it failed."""
    code = ("import time, engines; start = time.perf_counter(); engines.%s(); "
            "print('SECONDS', time.perf_counter() - start)" % function)
    env = {**os.environ, "WORKLOAD_OUT": out, "PROCFLOW_LOGGING_LEVEL": "WARNING", "PROCFLOW_END_SUMMARY": "0",
           "PROCFLOW_MAX_WORKERS": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True,
                          timeout=1800)  # cwd: the files a workload writes (orders.parquet) go there
    for line in done.stdout.splitlines():
        if line.startswith("SECONDS "):
            return float(line.split()[1])
    sys.stderr.write(f"{function} failed:\n{done.stderr[-2000:]}\n")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated workloads: sweep,images,etl")
    parser.add_argument("--json", action="store_true", help="a JSON line per measurement, and no table")
    options = parser.parse_args()
    chosen = [name for name in ENGINES if not options.only or name in options.only.split(",")]
    compile_bytecode(HERE)  # every engine's processes load compiled modules, as installed packages do
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="procflow-workloads-") as out:
        for round_number in range(options.rounds):
            for workload in chosen:
                for function, _, _ in ENGINES[workload]:
                    seconds = run_once(function, out)
                    if seconds is not None:
                        times.setdefault(function, []).append(seconds)
                        if options.json:
                            print(json.dumps({"workload": workload, "engine": function, "round": round_number,
                                              "seconds": seconds}), flush=True)
    if not options.json:
        print_table(chosen, times)
    return 0


def print_table(chosen: list[str], times: dict[str, list[float]]) -> None:
    table = Table(title="Real workloads, 2 workers: medians of fresh runs (read the ratios, not the seconds)")
    for column in ("workload", "engine", "median s", "runs", "× best fused peer"):
        table.add_column(column, justify="left" if column in ("workload", "engine") else "right", no_wrap=True)
    for workload in chosen:
        medians = {function: statistics.median(times[function]) for function, _, _ in ENGINES[workload]
                   if times.get(function)}
        peers = [medians[f] for f in medians if f in PEERS_FUSED]
        best = min(peers) if peers else None
        for function, what, _ in ENGINES[workload]:
            if function not in medians:
                table.add_row(workload, what, "failed", "0", "")
                continue
            ratio = f"{medians[function] / best:.2f}" if best else ""
            table.add_row(workload, what, f"{medians[function]:.2f}", str(len(times[function])), ratio)
    Console(width=140).print(table)
    print("× best fused peer: this engine's median over the fastest of joblib and concurrent.futures running "
          "each item's whole chain in one call (the issue's bar for procflow's task per stage: 1.05).")


if __name__ == "__main__":
    sys.exit(main())
