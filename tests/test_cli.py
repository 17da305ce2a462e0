"""`procflow run` and `python -m procflow` as a user types them."""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def procflow(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "procflow", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env)


@pytest.fixture
def scripts(tmp_path):
    (tmp_path / "good.py").write_text(textwrap.dedent("""
        from procflow import flow, task

        @task
        def double(x):
            return 2 * x

        @flow
        def pipeline(n: int = 3, label: str = "x"):
            print(f"label={label}")
            return double.map(range(n))
    """))
    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        import logging, os
        from procflow import flow, task

        if os.environ.get("USER_LEVEL"):  # a level the script sets itself
            logging.getLogger("procflow").setLevel(os.environ["USER_LEVEL"])

        @task
        def boom():
            raise ValueError("kaput")

        @flow
        def failing():
            boom.submit()
    """))
    (tmp_path / "two.py").write_text(textwrap.dedent("""
        from procflow import flow

        @flow
        def alpha():
            return 1

        @flow
        def beta():
            return 2
    """))
    (tmp_path / "none.py").write_text("x = 1\n")
    return tmp_path


def test_run_completes_with_parameters_and_writes_graph_timeline_stats(scripts):
    out = scripts
    done = procflow("run", str(out / "good.py"), "--graph", str(out / "g.dot"), "--timeline", str(out / "t.html"),
                    "--stats", str(out / "s.json"), "--", "--n", "12", "--label", "hello")
    assert done.returncode == 0, done.stderr
    assert "label=hello" in done.stdout
    assert "All 12 task runs of map 'double' finished: Completed 12" in done.stderr
    assert "double ×12" in (out / "g.dot").read_text()
    assert "<svg" not in (out / "t.html").read_text() and "bars" in (out / "t.html").read_text()
    stats = json.loads((out / "s.json").read_text())
    assert stats["tasks"][0]["task"] == "double" and stats["tasks"][0]["count"] == 12
    done = procflow("run", str(out / "good.py"), "--stats", str(out / "s.csv"), "--graph", str(out / "g.mmd"))
    assert done.returncode == 0
    rows = list(csv.DictReader((out / "s.csv").read_text().splitlines()))
    assert rows[0]["task"] == "double" and rows[0]["count"] == "3"
    assert (out / "g.mmd").read_text().startswith("flowchart LR")


def test_a_flow_runs_finished_line_comes_after_every_line_of_its_task_runs(tmp_path):
    """Task runs end in the engine's thread and the flow in the user's: the log keeps their order."""
    script = tmp_path / "mapped.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task

        @task
        def maybe(x):
            if x == 7:
                raise ValueError("seven")
            return x

        @flow
        def mapped():
            return maybe.map(range(15))

        for round in range(6):  # names of their own: two random names may be the same
            mapped.with_options(flow_run_name=f"round-{round}")(return_state=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    lines = [line for line in done.stderr.splitlines() if " | " in line]  # log records, not the closing summary
    ends = [i for i, line in enumerate(lines) if "Finished in state Failed('1/15 states failed.')" in line]
    assert len(ends) == 6, done.stderr
    start = 0
    for end in ends:
        flow_run = lines[end].split("'")[1]
        summary = f"Flow run '{flow_run}' - All 15 task runs of map 'maybe' finished"
        own = [line for line in lines[start:end] if summary in line or "'maybe-7' - Finished" in line]
        assert len(own) == 2, "\n".join(lines[start:end + 1])
        assert not any(flow_run in line for line in lines[end + 1:]), "a line of the flow run came after its end"
        start = end + 1


@pytest.mark.parametrize("setting, shown", [
    ({}, {"INFO", "ERROR"}),
    ({"PROCFLOW_LOGGING_LEVEL": "warning"}, {"ERROR"}),
    ({"USER_LEVEL": "ERROR"}, {"ERROR"}),  # the script sets the procflow logger's level itself
    ({"USER_LEVEL": "ERROR", "PROCFLOW_LOGGING_LEVEL": "INFO"}, {"INFO", "ERROR"}),
])
def test_the_logging_level_comes_from_the_environment_or_the_users_own_setting(scripts, setting, shown):
    env = {name: value for name, value in os.environ.items() if name != "PROCFLOW_LOGGING_LEVEL"}
    done = procflow("run", "bad.py", cwd=scripts, env={**env, **setting})
    levels = {line.split(" | ")[1].strip() for line in done.stderr.splitlines() if " | " in line}
    assert levels == shown, done.stderr
    assert "Task run 'boom-0' - Finished in state Failed" in done.stderr


@pytest.mark.parametrize("runner", ["thread", "sequential"])
def test_run_on_other_runners(scripts, runner):
    done = procflow("run", f"{scripts / 'good.py'}:pipeline", "--runner", runner, "--workers", "2")
    assert done.returncode == 0, done.stderr


def test_failed_flow_exits_1(scripts):
    done = procflow("run", str(scripts / "bad.py"))
    assert done.returncode == 1
    assert "Task run 'boom-0' - Finished in state Failed('Task run encountered an exception ValueError: kaput')" \
        in done.stderr
    failure = next(line for line in done.stderr.splitlines() if "Task run failed with exception" in line)
    assert "| ERROR   | Task run 'boom-0' - Task run failed with exception: ValueError('kaput') - Retries are " \
           "exhausted\\nTraceback (most recent call last):" in failure, "Prefect's line, the traceback on it"
    assert failure.endswith("raise ValueError(\"kaput\")\\nValueError: kaput")


@pytest.mark.parametrize("args, message", [
    (["run", "missing.py"], "no such script: missing.py"),
    (["run", "none.py"], "none.py defines no @flow"),
    (["run", "two.py"], "defines several flows (alpha, beta): name one"),
    (["run", "two.py:gamma"], "has no flow named 'gamma'"),
    (["run", "good.py", "--stats", "s.txt"], "must end in .json or .csv"),
    (["run", "good.py", "--workers", "0"], "--workers: must be a whole number of at least 1, got '0'"),
    (["run", "good.py", "--", "--nope", "1"], "--nope: the flow has no parameter 'nope'; its parameters: n, label"),
    (["fly"], "invalid choice"),
])
def test_bad_command_lines_exit_2_with_a_clear_message(scripts, args, message):
    done = procflow(*args, cwd=scripts)
    assert done.returncode == 2
    assert message in done.stderr


def test_flow_parameters_follow_the_flows_annotations(tmp_path):
    (tmp_path / "typed.py").write_text(textwrap.dedent("""
        from procflow import flow

        @flow
        def typed(n: int = 1, rate: float = 0.5, label: str = "x", flag: bool = False, extra=None):
            print(repr((n, rate, label, flag, extra)))
    """))
    done = procflow("run", "typed.py", "--", "--n=5", "--rate", "2", "--label", "123", "--flag", "--extra", "[1, 2]",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(5, 2.0, '123', True, [1, 2])"
    done = procflow("run", "typed.py", "--", "--flag", "no", "--extra", "plain words", cwd=tmp_path)
    assert done.stdout.strip() == "(1, 0.5, 'x', False, 'plain words')"
    for args, message in ((["--n", "five"], "--n: expected int, got 'five'"),
                          (["--flag", "maybe"], "--flag: expected bool, got 'maybe'"),
                          (["--count", "3"], "--count: the flow has no parameter 'count'; its parameters: n, rate, "
                                             "label, flag, extra")):
        done = procflow("run", "typed.py", "--", *args, cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr


def test_named_flow_among_several(scripts):
    done = procflow("run", "two.py:beta", cwd=scripts)
    assert done.returncode == 0 and "Created flow run" in done.stderr and "for flow 'beta'" in done.stderr


def test_a_flow_defined_in_a_class_is_named_class_dot_method(tmp_path):
    (tmp_path / "kennel.py").write_text(textwrap.dedent("""
        from procflow import flow, task

        @task
        def bark(times):
            return "woof" * times

        class Kennel:
            @flow
            @staticmethod
            def puppy(times: int = 1):
                return bark.submit(times).result()  # its task ran in a worker

            @flow
            @classmethod
            def elder(cls):
                return cls.__name__
    """))
    done = procflow("run", "kennel.py:Kennel.puppy", "--", "--times", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "woofwoof"
    done = procflow("run", "kennel.py:Kennel.elder", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "Kennel", done.stderr


def test_procflow_run_drives_a_generator_flow_and_prints_what_it_yielded(tmp_path):
    (tmp_path / "squares.py").write_text(textwrap.dedent("""
        from procflow import flow, task

        @task
        def square(x):
            return x * x

        @flow
        def squares(n: int = 3):
            for x in range(n):
                yield square(x)
    """))
    done = procflow("run", "squares.py", "--", "--n", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 4, 9]"


def test_terminal_shows_live_progress_and_end_table(scripts):
    """Run under a real pseudo-terminal and read what it draws."""
    (scripts / "slow.py").write_text(textwrap.dedent("""
        import time
        from procflow import flow, task

        @task
        def nap(x):
            time.sleep(0.1)
            return x

        @flow
        def napping(n: int = 20):
            return nap.map(range(n))
    """))
    main, child = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120")
    process = subprocess.Popen([sys.executable, "-m", "procflow", "run", str(scripts / "slow.py"), "--", "--n", "20"],
                               stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    screen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=120) == 0
    text = screen.decode(errors="replace")
    assert "\x1b[" in text, "rich draws with terminal escape codes"
    assert " · wall " in text and "p95" in text and "Completed" in text, "the end summary"
    assert "workers busy" in text and "/20" in text, "the live view was drawn"


def test_plain_output_keeps_every_record_on_one_line_whatever_its_length(tmp_path):
    (tmp_path / "chatty.py").write_text(textwrap.dedent("""
        from procflow import flow, get_run_logger, task

        @task
        def talk():
            logger = get_run_logger()
            logger.info("x" * 5000 + "END")
            logger.info("first line\\nsecond line")
            try:
                raise KeyError("inside")
            except KeyError:
                logger.exception("caught")

        @flow
        def chatty():
            talk.submit()
    """))
    done = procflow("run", str(tmp_path / "chatty.py"))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.split("\nFlow run '")[0].splitlines()  # the log; then the closing summary
    assert "results held at peak" in done.stderr
    assert all(line[:2].isdigit() for line in lines), "every line is a record of its own"
    assert any(line.endswith("x" * 5000 + "END") for line in lines)
    assert any(line.endswith("first line\\nsecond line") for line in lines)
    caught = [line for line in lines if "caught" in line]
    assert len(caught) == 1 and "KeyError: 'inside'" in caught[0]


def test_a_script_that_runs_a_flow_loads_neither_rich_nor_asyncio_nor_the_drawing_modules_until_needed(tmp_path):
    """Every script pays procflow's import: the console, the live view, the graph and the report
    load when a terminal, a drawing or the closing summary needs them; asyncio with an event loop."""
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import sys
        from procflow import flow, task
        from procflow.task_runners import ProcessPoolTaskRunner

        @task
        def double(x):
            return 2 * x

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
        def plain():
            return sum(double.map(range(4)).result())

        assert plain() == 12
        loaded = [name for name in ("rich", "asyncio", "procflow.graph", "procflow.report", "procflow.live_view")
                  if name in sys.modules]
        print("LOADED", loaded)
    """))
    env = {**os.environ, "PROCFLOW_END_SUMMARY": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout
