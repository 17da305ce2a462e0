"""Seeing a run (issue 21): the report page in headless Chromium, the Chrome trace, the live
view under a real terminal, the end summary, artifacts, and `procflow run`'s output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from conftest import Terminal

from procflow import flow, task
from procflow.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                                create_table_artifact, update_progress_artifact)
from procflow.console import end_table
from procflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from rich.console import Console


@task
def make(i):
    create_table_artifact([{"i": i, "square": i * i}], key=f"row-{i}")
    return np.full(1 << 17, i, dtype=np.float64)  # 1 MB: through shared memory


@task
def total(array):
    if array[0] == 3:
        raise ZeroDivisionError("three is not allowed")
    return float(array.sum())


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def pipeline(n: int = 6):
    progress = create_progress_artifact(0.0, key="progress")
    sums = total.map(make.map(range(n)))
    create_markdown_artifact("# Sums\nall of them", key="summary", description="what the flow made")
    create_link_artifact("file:///tmp/out", link_text="the output")
    update_progress_artifact(progress, 100.0)
    return sums


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is installed by .ci/run"
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
         "--enable-logging=stderr", f"--user-data-dir={tmp_path / 'profile'}", *arguments],
        capture_output=True, text=True, timeout=180)


def selftest(tmp_path: Path, page: str) -> tuple[dict, str]:
    """The page hovers its first bar and zooms, and writes what it saw: read with --dump-dom."""
    done = chromium(tmp_path, "--dump-dom", f"file://{page}#selftest")
    found = re.search(r'<pre id="selftest">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")), done


def test_the_report_page_shows_summary_timeline_graph_and_artifacts_in_a_browser(tmp_path):
    pipeline(return_state=True)
    record = pipeline.last_run
    assert [artifact["type"] for artifact in record.artifacts[:3]] == ["progress", "markdown", "link"]
    assert record.artifacts[0]["data"] == 100.0, "the update reached the artifact"
    assert sorted(a["key"] for a in record.artifacts if a["type"] == "table") == [f"row-{i}" for i in range(6)]
    assert {a["task_run"] for a in record.artifacts if a["type"] == "table"} == {f"make-{i}" for i in range(6)}
    page = record.report_html(str(tmp_path / "report.html"))
    text = Path(page).read_text()
    assert "http://" not in text and "https://" not in text and "<script src" not in text, "self-contained"
    seen, done = selftest(tmp_path, page)
    assert seen["errors"] == [] and "Uncaught" not in done.stderr, done.stderr[-2000:]
    assert seen["runs"] == 12
    tooltip = seen["tooltip"]
    first = min((run for run in record.task_runs if run.start_time), key=lambda run: run.id)
    assert tooltip.startswith(f"{first.name}  ({first.task_name})"), tooltip
    for detail in ("state     Completed", f"worker    {first.worker}", "duration", "result    1.0 MB",
                   "attempts  1"):
        assert detail in tooltip, tooltip
    dom = done.stdout
    assert "three is not allowed" in dom and "total-3" in dom, "the failure is listed with its first line"
    assert dom.count('class="node"') == 12 and "1.0 MB" in dom, "graph nodes, and result sizes on its arrows"
    assert "row-0" in dom and "<progress" in dom and "Sums" in dom and "the output" in dom, "artifacts"
    assert "waiting for upstream" in dom and "moving data" in dom


def test_a_report_of_10_000_runs_renders_and_zooms_quickly(tmp_path):
    @task
    def tiny(i):
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def many():
        return tiny.map(range(10_000))

    many(return_state=True)
    page = many.last_run.report_html(str(tmp_path / "many.html"))
    started = time.monotonic()
    seen, done = selftest(tmp_path, page)
    assert time.monotonic() - started < 60, "the browser rendered it within a generous bound"
    assert seen["runs"] == 10_000 and seen["errors"] == []
    assert seen["renderMs"] < 3000 and seen["zoomMs"] < 3000, seen
    assert seen["tooltip"].startswith("tiny-"), seen
    assert 'class="node"' in done.stdout and "tiny ×10000" in done.stdout, "the map is one node"


TRACE_PHASES = {"X", "M", "s", "f"}


def test_the_chrome_trace_follows_the_trace_event_format(tmp_path):
    pipeline(return_state=True)
    record = pipeline.last_run
    trace = json.loads(json.dumps(record.to_chrome_trace()))  # what a file holds
    assert isinstance(trace["traceEvents"], list) and trace["displayTimeUnit"] == "ms"
    for event in trace["traceEvents"]:  # the fields each phase requires (the format's spec)
        assert event["ph"] in TRACE_PHASES and isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert isinstance(event["name"], str)
        if event["ph"] == "X":
            assert event["ts"] >= 0 and event["dur"] >= 0
        if event["ph"] in ("s", "f"):
            assert isinstance(event["id"], int) and event["ts"] >= 0
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name") and "name" in event["args"]
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] not in ("transfer", "loading")]
    assert sorted(e["name"] for e in slices) == sorted(run.name for run in record.task_runs if run.start_time)
    workers = {str(run.worker) for run in record.task_runs if run.start_time}
    threads = [e for e in trace["traceEvents"] if e["name"] == "thread_name"]
    assert {e["args"]["name"] for e in threads} == {f"worker {w}" for w in workers}
    starts = [e for e in trace["traceEvents"] if e["ph"] == "s"]
    finishes = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "f"}
    assert len(starts) == 6 and all(finishes[e["id"]]["ts"] >= e["ts"] for e in starts), "a flow arrow per edge"
    by_name = {e["name"]: e for e in slices}
    assert by_name["total-0"]["ts"] >= by_name["make-0"]["ts"] + by_name["make-0"]["dur"] - 1


def test_the_end_summary_says_where_the_time_went_without_wrapping():
    pipeline(return_state=True)
    narrow = Console(record=True, width=60)
    narrow.print(end_table(pipeline.last_run))
    assert narrow.export_text().splitlines()[0].endswith("…"), "a title cut, not wrapped into three lines"
    console = Console(record=True, width=150)
    console.print(end_table(pipeline.last_run))
    text = console.export_text()
    head = text.splitlines()[0]
    assert head.startswith(f"Flow run '{pipeline.last_run.name}' Failed(") and "2 workers" in head
    assert "wall" in head and "busy" in head and "results held at peak" in head
    flat = " ".join(text.split())  # the legend line may wrap at the console's width
    assert "waiting = waiting for upstream" in flat and "queued = queued for a worker" in flat
    assert "moving = moving data" in flat
    assert re.search(r"^total\s+6\s+5\s+1\b", text, re.M), text
    assert "total-3 Failed: ZeroDivisionError: three is not allowed" in text


def test_many_failures_show_a_few_in_full_then_counts_per_error_type():
    @task
    def odd(i):
        if i % 3 == 0:
            raise ValueError(f"bad {i}")
        if i % 3 == 1:
            raise KeyError(i)
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def failing():
        return odd.map(range(100))

    failing(return_state=True)
    console = Console(record=True, width=160)
    console.print(end_table(failing.last_run))
    text = console.export_text()
    assert "Did not complete: 67" in text
    assert len(re.findall(r"^  odd-\d+ Failed:", text, re.M)) == 5
    assert re.search(r"and 62 more: (ValueError ×3\d, KeyError ×3\d|KeyError ×3\d, ValueError ×3\d)", text), text


SCRIPT = textwrap.dedent("""
    import time
    from procflow import flow, task

    @task
    def step(i):
        time.sleep(0.3)
        return i

    @task
    def add(xs):
        return sum(xs)

    @flow
    def sums(n: int = 8):
        return add(step.map(range(n)))
""")


def test_procflow_run_prints_the_result_writes_report_and_trace_and_one_summary(tmp_path):
    script = tmp_path / "sums.py"
    script.write_text(SCRIPT)
    report, trace = tmp_path / "run.html", tmp_path / "run.json"
    done = subprocess.run([sys.executable, "-m", "procflow", "run", str(script), "--workers", "2", "--report",
                           str(report), "--trace", str(trace), "--", "--n", "4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6", "the flow's return value, which was thrown away"
    assert report.exists() and json.loads(trace.read_text())["traceEvents"]
    assert done.stderr.count("results held at peak") == 1, "one closing summary, also in a pipe"
    as_json = subprocess.run([sys.executable, "-m", "procflow", "run", str(script), "--json", "--", "--n", "3"],
                             capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout) == 3


def test_a_bug_in_the_flow_body_shows_the_users_line(tmp_path):
    script = tmp_path / "buggy.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task

        @task
        def one():
            return 1

        @flow
        def buggy():
            x = one()
            return x / 0
    """))
    done = subprocess.run([sys.executable, "-m", "procflow", "run", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert f'File "{script}", line 11, in buggy' in done.stderr and "return x / 0" in done.stderr, done.stderr
    assert "procflow/flow_runs.py" not in done.stderr


def test_a_script_calling_its_flow_several_times_gets_one_summary(tmp_path):
    script = tmp_path / "four.py"
    script.write_text(SCRIPT + "\nfor n in range(4):\n    sums(n=2)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("results held at peak") == 1 and "4 flow runs:" in done.stderr, done.stderr


def test_the_live_view_draws_bars_and_the_real_worker_count_in_a_terminal(tmp_path):
    script = tmp_path / "sums.py"
    script.write_text(SCRIPT)
    terminal = Terminal([sys.executable, "-m", "procflow", "run", str(script), "--workers", "2", "--", "--n", "12"],
                        COLUMNS="160", TERM="xterm-256color")
    assert terminal.finish() == 0
    screen = terminal.screen()
    assert re.search(r"step\s.*\d+/12", screen), screen[-3000:]
    assert "workers busy" in screen and "/2 · CPU" in screen, "out of the pool's size, not messages in flight"
    assert re.search(r"workers busy [0-2]/2", screen)
    assert "shared memory" in screen and "peak" in screen


def test_many_failures_log_a_traceback_for_the_first_few_only(tmp_path):
    """Issue 21: 100 failed runs printed 1 156 lines; each still gets its line."""
    script = tmp_path / "failing.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task

        @task
        def bad(i):
            raise ValueError(f"bad {i}")

        @flow
        def failing():
            return bad.map(range(30))
    """))
    done = subprocess.run([sys.executable, "-m", "procflow", "run", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    failed = [line for line in done.stderr.splitlines() if "Task run failed with exception" in line]
    assert len(failed) == 30
    assert sum("Traceback (most recent call last)" in line for line in failed) == 5
    assert "Did not complete: 30" in done.stderr and "and 25 more: ValueError ×25" in done.stderr
