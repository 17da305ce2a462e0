"""A task runner used directly, as Prefect's engine and tests use one: `with runner:` then
`runner.submit(task, parameters)` / `runner.map(task, parameters)` (Prefect 3.8's
`tests/test_task_runners.py`, whose texts these are). The runs go to a flow run of the
runner's own for the block; leaving the block waits for them. `runner` is every kind
(`conftest.py`), Dask's on a real local cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from procflow import flow, tags, task
from procflow.runtime import task_run
from procflow.task_runners import SequentialTaskRunner, ThreadPoolTaskRunner

@task
def add(a, b):
    return a + b


@task
async def add_later(a, b):
    return a + b


@task
def fail():
    raise RuntimeError("no")


@task
def run_tags():
    return set(task_run.tags)


@task
def nap_then_stamp(seconds):
    time.sleep(seconds)
    return time.time()


@task
def ones(n):
    return np.ones(n)


def test_submit_and_map_take_parameters_by_name_and_futures_stand_for_results(runner):
    with runner:
        first = runner.submit(add, {"a": 1, "b": 2})
        later = runner.submit(add_later, {"a": first, "b": 10})
        mapped = runner.map(add, {"a": [1, 2, 3], "b": [4, 5, 6]})
        big = runner.submit(ones, {"n": 1 << 18})
        assert first.result() == 3 and later.result() == 13
        assert [future.result() for future in mapped] == [5, 7, 9]
        assert big.result().sum() == 1 << 18


def test_wait_for_an_upstream_that_failed_leaves_the_run_not_ready(runner):
    with runner:
        failed = runner.submit(fail, {})
        waiting = runner.submit(add, {"a": 1, "b": 1}, wait_for=[failed])
        waiting.wait()
        assert failed.state.is_failed() and waiting.state.name == "NotReady"
        with pytest.raises(RuntimeError, match="no"):
            failed.result()


def test_tags_where_the_runner_is_used_reach_the_runs(runner):
    with tags("tag1", "tag2"):
        with runner:
            assert runner.submit(run_tags, {}).result() == {"tag1", "tag2"}


def test_leaving_the_block_waits_for_its_runs():
    runner = ThreadPoolTaskRunner(max_workers=2)
    with runner:
        future = runner.submit(nap_then_stamp, {"seconds": 0.5})
    left = time.time()
    assert future.state.is_completed() and future.result() <= left


def test_a_runner_not_started_or_started_twice_says_so():
    runner = ThreadPoolTaskRunner()
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        runner.submit(add, {"a": 1, "b": 2})
    with runner:
        with pytest.raises(RuntimeError, match="already started"):
            runner.__enter__()
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        runner.map(add, {"a": [1], "b": [2]})


def test_an_error_in_the_block_cancels_the_runs_not_started_and_the_runner_serves_flows_after():
    runner = SequentialTaskRunner()
    started = time.monotonic()
    with pytest.raises(KeyError):
        with runner:
            first = runner.submit(nap_then_stamp, {"seconds": 0.3})
            rest = [runner.submit(nap_then_stamp, {"seconds": 5}) for _ in range(3)]
            raise KeyError("the user's own error")
    assert time.monotonic() - started < 4, "the runs not started were waited for"
    assert first.state.is_completed() or first.state.is_cancelled()
    assert all(future.state.is_cancelled() for future in rest)

    @flow(task_runner=runner)
    def after():
        return add.submit(2, 3).result()

    assert after() == 5


CTRL_C_SCRIPT = '''
import sys, time
from procflow import task
from procflow.task_runners import ProcessPoolTaskRunner

@task
def nap(started):
    open(started, "w").close()
    time.sleep(60)

with ProcessPoolTaskRunner(max_workers=1) as runner:
    future = runner.submit(nap, {"started": sys.argv[1]})
    queued = [runner.submit(nap, {"started": sys.argv[1]}) for _ in range(3)]
    future.result()
'''


def test_ctrl_c_in_the_block_cancels_its_runs_at_once(tmp_path):
    script, started = tmp_path / "use.py", tmp_path / "started"
    script.write_text(CTRL_C_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(started)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert time.monotonic() - sent < 15, "the runs were waited for, not cancelled"
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr, stderr


def test_a_duplicate_runner_has_the_same_settings_and_is_not_started():
    from procflow.task_runners import ProcessPoolTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

    threads = ThreadPoolTaskRunner(max_workers=7)
    with threads:
        copy = threads.duplicate()
        assert copy is not threads and copy == threads and type(copy) is ThreadPoolTaskRunner
        with copy:  # not started with the original: it starts on its own
            pass
    processes = ProcessPoolTaskRunner(max_workers=2, worker_env={"MODE": "batch"})
    assert processes.duplicate() == processes
    assert processes != ProcessPoolTaskRunner(max_workers=2)  # another environment
    assert threads != ThreadPoolTaskRunner(max_workers=8) and threads != SequentialTaskRunner()
    assert SequentialTaskRunner() == SequentialTaskRunner() and len({threads, copy}) == 1
