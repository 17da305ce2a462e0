"""The example scripts, run as a user runs them: a subprocess, log lines checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (\w+) +\| (.*)$")


def run_example(name: str, *args: str) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    messages = [LINE.match(line).group(2) for line in done.stderr.splitlines() if LINE.match(line)]
    return messages, done.stdout


def flow_run_name(messages: list[str]) -> str:
    return re.match(r"Created flow run '([a-z]+-[a-z]+)' for flow", messages[0]).group(1)


def test_concurrent_submits_prints_the_guides_lines():
    messages, _ = run_example("01_concurrent_submits.py")
    name = flow_run_name(messages)
    for expected in (
        f"Flow run '{name}' - Created task run 'first-0' for task 'first'",
        f"Flow run '{name}' - Submitted task run 'first-0' for execution.",
        f"Flow run '{name}' - Created task run 'second-0' for task 'second'",
        "Task run 'first-0' - I'm first!",
        "Task run 'second-0' - I'm second!",
        "Task run 'first-0' - Finished in state Completed()",
        f"Flow run '{name}' - Finished in state Completed('All states completed.')",
    ):
        assert expected in messages


def test_automatic_dependency_runs_second_after_first():
    messages, stdout = run_example("02_automatic_dependencies.py")
    assert stdout.strip() == "43"
    assert messages.index("Task run 'first-0' - Finished in state Completed()") < \
        messages.index("Task run 'second-0' - I'm second! first gave me 42")


def test_wait_for_with_map_orders_setup_children_cleanup():
    messages, stdout = run_example("03_wait_for_with_map.py")
    assert stdout.strip() == "[2, 4, 6]"
    setup_done = messages.index("Task run 'setup-0' - Finished in state Completed()")
    children = [messages.index(f"Task run 'process-{i}' - Processing {i + 1}") for i in range(3)]
    cleanup = messages.index("Task run 'cleanup-0' - Cleaning up")
    assert setup_done < min(children) and max(children) < cleanup


def test_monte_carlo_prints_price_and_speed_up():
    _, stdout = run_example("monte_carlo.py", "--chunks", "4", "--paths", "200000")
    prices = [float(p) for p in re.findall(r"price (\d+\.\d+) in", stdout)]
    assert len(prices) == 2 and prices[0] == prices[1], "same seeds give the same price on every runner"
    assert abs(prices[0] - 7.128) < 0.3
    assert re.search(r"speed-up over sequential: \d+\.\d+x on \d+ workers", stdout)


def test_async_pipeline_overlaps_its_reads_and_maps_on_the_pool():
    messages, stdout = run_example("async_pipeline.py")
    assert stdout.strip().startswith("8 digests, checksum ")
    read = next(m for m in messages if " - read 8 chunks in " in m)
    seconds = float(re.search(r"in (\d+\.\d+) s", read).group(1))
    assert seconds < 1.0, f"eight 0.2 s reads did not overlap: {read}"  # one after another: 1.6 s
    assert sum("Task run 'digest-" in m and "Finished in state Completed()" in m for m in messages) == 8


def test_cached_results_example_serves_its_second_run_from_the_cache():
    _, stdout = run_example("04_cached_results.py")
    first, second = stdout.strip().splitlines()
    assert first.startswith("first run") and "0 of 4 simulations served from the cache" in first
    assert second.startswith("second run") and "4 of 4 simulations served from the cache" in second
    assert first.split("means")[1] == second.split("means")[1]
    _, again = run_example("04_cached_results.py")  # a new process: the store outlived the last one
    assert "4 of 4 simulations served from the cache" in again.splitlines()[0]


def test_transactions_example_rolls_back_a_failed_night_and_commits_the_next(tmp_path):
    messages, stdout = run_example("05_transactions.py", "--workdir", str(tmp_path))
    first, second = stdout.strip().splitlines()
    assert first == ("first run: failed (Flow run encountered an exception: RuntimeError: the warehouse refused "
                     "the load); 4 extracts ran; staging files left: 0; results stored: 0")
    assert second == "second run: loaded 4000 rows; 4 extracts ran; staging files left: 4; results stored: 4"
    assert sum(m.endswith("Running rollback hook 'remove_staged'") for m in messages) == 4
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"2026-12-07-part-{i}" for i in range(4)]
