"""The benchmark harness's own arithmetic (the timings themselves are never tested)."""

from __future__ import annotations

import importlib.util
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
        {"workload": "big", "engine": "procflow", "median_s": 0.15},
        {"workload": "big", "engine": "floor (one process)", "median_s": 0.05},
        {"workload": "big", "engine": "dask distributed", "median_s": 0.06},
        {"workload": "kept", "engine": "procflow", "median_s": 0.07},
        {"workload": "kept", "engine": "floor (one process)", "median_s": 0.05},
        {"workload": "fan-out", "engine": "procflow", "median_s": 0.07},  # no floor: no line
    ]
    assert harness.large_result_checks(rows) == [
        "big: procflow ÷ floor = 3.00 (✗ ≤ 2), procflow ÷ dask distributed = 2.50 (✗ < 1)",
        "kept: procflow ÷ floor = 1.40 (✓ ≤ 2)",
    ]
