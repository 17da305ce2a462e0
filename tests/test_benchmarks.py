"""The benchmark harness's own arithmetic (the timings themselves are never tested)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "harness.py"


def load_harness():
    spec = importlib.util.spec_from_file_location("procflow_bench_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_large_result_checks_compare_procflow_with_the_floor_and_dask():
    harness = load_harness()
    rows = [
        {"workload": "big", "engine": "procflow", "seconds": 0.15},
        {"workload": "big", "engine": harness.FLOOR, "seconds": 0.05},
        {"workload": "big", "engine": "dask distributed", "seconds": 0.06},
        {"workload": "kept", "engine": "procflow", "seconds": 0.07},
        {"workload": "kept", "engine": harness.FLOOR, "seconds": 0.05},
        {"workload": "fan-out", "engine": "procflow", "seconds": 0.07},  # no floor: no line
    ]
    assert harness.large_result_checks(rows) == [
        "big: procflow ÷ lower bound = 3.00 (goal ≤ 2: not yet), procflow ÷ dask distributed = 2.50 "
        "(goal < 1: not yet)",
        "kept: procflow ÷ lower bound = 1.40 (goal ≤ 2: met)",
    ]


def test_engines_report_their_median_and_the_floor_its_best_time():
    harness = load_harness()
    durations = iter([3, 5, 1, 1, 2, 9])  # repeat by repeat: the engine, then the floor
    pending_end: list[int] = []

    def fake_clock() -> float:
        if not pending_end:  # a start: the matching end is one duration later
            pending_end.append(next(durations))
            return 0.0
        return float(pending_end.pop())

    engines = {"procflow": lambda: None, harness.FLOOR: lambda: None}
    times = harness.interleaved_times(engines, repeats=3, clock=fake_clock)
    assert times == {"procflow": 2.0, harness.FLOOR: 1.0}


def test_procflow_bench_runs_a_workload_on_procflow_and_its_peers_and_reports_ratios(tmp_path):
    """One run gives both: the table on stdout, the JSON rows appended to the file."""
    rows_file = tmp_path / "rows.jsonl"
    table = subprocess.run([sys.executable, "-m", "procflow", "bench", "--quick", "--only", "chain", "--without",
                            "dask,ray", "--json", str(rows_file)], capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr[-2000:]
    rows = {row["engine"]: row for row in map(json.loads, rows_file.read_text().splitlines())}
    assert {"procflow", "raw loky", "concurrent.futures"} <= rows.keys()
    assert not {"dask distributed", "procflow on dask", "ray"} & rows.keys(), "--without dask,ray: no cluster"
    assert {row["workload"] for row in rows.values()} == {"chain 200"}
    loky = rows["raw loky"]["seconds"]
    for row in rows.values():
        assert row["seconds"] > 0 and abs(row["ratio_to_loky"] - row["seconds"] / loky) < 1e-9
    assert rows["procflow"]["target"] == 1.0
    lines = table.stdout.splitlines()
    assert not any(line.startswith("{") for line in lines), "issue 22: JSON only with --json"
    assert "procflow benchmarks" in table.stdout and "× raw loky" in table.stdout and "goal" in table.stdout
    assert all(len(line) <= 150 for line in lines) and "✗" not in table.stdout
    assert any(line.startswith("median: ") for line in lines), "each column explained"
    for engine, row in rows.items():  # the table shows what the file says
        assert any(engine in line and f"{row['seconds'] * 1000:.1f} ms" in line for line in lines), engine


def test_procflow_bench_json_to_stdout_prints_json_lines_and_no_table():
    done = subprocess.run([sys.executable, "-m", "procflow", "bench", "--quick", "--only", "startup", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["workload"] for row in rows] == ["start-up"] and rows[0]["import"] > 0
    assert "procflow benchmarks" not in done.stdout
