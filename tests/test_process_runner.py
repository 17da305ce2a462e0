"""What is particular to the process runner: worker settings, batching, functions by value."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter

import psutil
import pytest
from conftest import values

from procflow import flow, task
from procflow.runners.processes import default_workers
from procflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


@task
def env_of(name):
    return os.environ.get(name), os.getpid()


def mark_worker(path):
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")


@task
def noop(x):
    return x


def test_workers_get_blas_thread_limits_unless_worker_env_says_otherwise():
    cores = os.cpu_count() or 1

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def limits():
        return env_of.submit("OMP_NUM_THREADS"), env_of.submit("OPENBLAS_NUM_THREADS")

    (omp, pid), (openblas, _) = values(limits())
    assert omp == openblas == str(max(1, cores // 2)) and pid != os.getpid()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2, worker_env={"OMP_NUM_THREADS": "7"}))
    def overridden():
        return env_of.submit("OMP_NUM_THREADS")

    assert values(overridden())[0] == "7"


def test_initializer_runs_once_in_each_worker(tmp_path):
    marks = tmp_path / "initialized"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2, initializer=mark_worker, initargs=(str(marks),)))
    def body():
        return [env_of.submit("HOME") for _ in range(20)]

    pids = {pid for _, pid in values(body())}
    initialized = marks.read_text().split()
    assert set(map(int, initialized)) >= pids and len(initialized) == len(set(initialized))


def refuse_to_start(reason):
    raise RuntimeError(reason)


def test_a_failing_initializer_fails_the_runs_with_its_error_instead_of_hanging():
    """loky would start a worker whose initializer raised again and again, and the flow wait forever."""
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2, initializer=refuse_to_start, initargs=("no licence",)))
    def body():
        return [env_of.submit("HOME") for _ in range(3)]

    started = time.monotonic()
    state = body(return_state=True)
    assert time.monotonic() - started < 30
    assert state.is_failed()
    for run in body.last_run.task_runs:
        assert run.state.is_failed()
        with pytest.raises(RuntimeError, match="the worker initializer 'refuse_to_start' failed in worker "
                                               r"\d+: RuntimeError: no licence"):
            run.state.result()


def test_tiny_runs_travel_in_batches_but_keep_their_own_records():
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def many():
        return noop.map(range(3_000))

    assert values(many()) == list(range(3_000))
    runs = many.last_run.task_runs
    assert len({run.id for run in runs}) == 3_000
    assert all(run.state.is_completed() and run.attempts == 1 and run.worker for run in runs)
    assert all(run.start_time <= run.end_time for run in runs)
    starts = sorted(run.start_time for run in runs)
    assert starts[-1] - starts[0] < 30


@task
def spin_then_stamp(seconds: float) -> tuple[int, float]:
    """Busy for `seconds` (a CPU-bound run), then its worker and end by the shared clock."""
    started = time.time()
    while time.time() - started < seconds:
        pass
    return os.getpid(), time.time()


def test_short_runs_travel_several_to_a_message_yet_share_the_workers_to_the_end():
    """Runs of 5 ms go about ten to a message (~50 ms of work): each worker still gets its
    share, and the last messages are split so that neither worker is left with a queue
    while the other has finished."""

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def body():
        return [future.result() for future in spin_then_stamp.map([0.005] * 400)]

    for attempt in range(2):  # a race is tested by repeating it
        stamps = body()
        runs_by_worker = Counter(pid for pid, _ in stamps)
        assert len(runs_by_worker) == 2 and min(runs_by_worker.values()) >= 100, \
            f"attempt {attempt}: runs per worker {runs_by_worker}"
        last_ends = [max(end for who, end in stamps if who == pid) for pid in runs_by_worker]
        assert abs(last_ends[0] - last_ends[1]) < 0.5, \
            f"attempt {attempt}: one worker went on {abs(last_ends[0] - last_ends[1]):.2f} s after the other"


def test_default_workers_follow_physical_cores_and_the_environment(monkeypatch):
    monkeypatch.setenv("PROCFLOW_MAX_WORKERS", "3")
    assert default_workers() == 3 and ProcessPoolTaskRunner().max_workers == 3
    monkeypatch.setenv("PROCFLOW_MAX_WORKERS", "three")
    with pytest.raises(ValueError, match="PROCFLOW_MAX_WORKERS must be a whole number, got 'three'"):
        ProcessPoolTaskRunner()
    monkeypatch.delenv("PROCFLOW_MAX_WORKERS")
    assert ProcessPoolTaskRunner().max_workers == (psutil.cpu_count(logical=False) or os.cpu_count())


def test_prefects_pool_size_settings_set_the_default_worker_counts(monkeypatch):
    from procflow.settings import (PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS,
                                   PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS, temporary_settings)

    monkeypatch.delenv("PROCFLOW_MAX_WORKERS", raising=False)
    monkeypatch.setenv("PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS", "5")
    monkeypatch.setenv("PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS", "7")
    assert ProcessPoolTaskRunner().max_workers == 5 and ThreadPoolTaskRunner().max_workers == 7
    assert ProcessPoolTaskRunner(max_workers=2).max_workers == 2 and ThreadPoolTaskRunner(3).max_workers == 3
    monkeypatch.setenv("PROCFLOW_MAX_WORKERS", "4")  # procflow's own wins
    assert ProcessPoolTaskRunner().max_workers == 4
    with temporary_settings({PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS: 3,
                             PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS: 9}):
        monkeypatch.delenv("PROCFLOW_MAX_WORKERS")
        assert ProcessPoolTaskRunner().max_workers == 3 and ThreadPoolTaskRunner().max_workers == 9


@pytest.mark.parametrize("runner", [ProcessPoolTaskRunner, ThreadPoolTaskRunner])
@pytest.mark.parametrize("workers", [0, -2, 1.5])
def test_a_worker_count_below_one_or_not_whole_is_refused(runner, workers):
    with pytest.raises(ValueError, match=f"max_workers must be a whole number of at least 1, got {workers}"):
        runner(max_workers=workers)


@pytest.mark.parametrize("count", [0, -1, 2.5])
def test_a_max_tasks_per_worker_below_one_or_not_whole_is_refused(count):
    """A worker that may run no task would hand every run back, forever."""
    with pytest.raises(ValueError, match=f"max_tasks_per_worker must be a whole number of at least 1, got {count}"):
        ProcessPoolTaskRunner(max_tasks_per_worker=count)


def test_functions_and_classes_of_a_script_run_by_path_travel_by_value(tmp_path):
    script = tmp_path / "local_things.py"
    script.write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from procflow import flow, task

        @dataclass
        class Point:
            x: int
            y: int

        def make_adder(n):
            @task
            def add(point):
                return Point(point.x + n, point.y + n)
            return add

        @flow
        def shifted():
            return make_adder(5).submit(Point(1, 2)).result()

        if __name__ == "__main__":
            print(shifted())
    """))
    by_path = subprocess.run([sys.executable, "-m", "procflow", "run", str(script)], capture_output=True, text=True,
                             timeout=120)
    assert by_path.returncode == 0, by_path.stderr
    as_main = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert as_main.returncode == 0, as_main.stderr
    assert as_main.stdout.strip() == "Point(x=6, y=7)"


def test_a_bound_method_of_a_scripts_class_runs_as_a_task(tmp_path):
    script = tmp_path / "methods.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task

        class Scaler:
            def __init__(self, k):
                self.k = k

            def scale(self, x):
                return x * self.k

        @flow
        def scaled():
            return task(Scaler(4).scale).submit(2).result()

        if __name__ == "__main__":
            print(scaled())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"


@pytest.mark.parametrize("runner", ["process", "dask"])
def test_a_task_from_a_script_fails_with_its_source_lines_in_the_traceback(tmp_path, runner):
    """Functions of a script travel by value; the traceback still names the script's lines."""
    script = tmp_path / "failing_script.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task

        def check(x):
            raise ValueError(f"x is {x}")  # the line the traceback shows

        @task
        def validate(x):
            return check(x)

        @flow
        def validating():
            return validate.submit(3)
    """))
    done = subprocess.run([sys.executable, "-m", "procflow", "run", str(script), "--runner", runner],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stderr
    assert f'File "{script}", line 5, in check' in done.stderr.replace("\\n", "\n"), done.stderr
    assert 'raise ValueError(f"x is {x}")  # the line the traceback shows' in done.stderr.replace("\\n", "\n")
    traceback = done.stderr.split("Traceback (most recent call last):", 1)[1].replace("\\n", "\n")
    first_frame = traceback.strip().splitlines()[0]
    assert first_frame.startswith(f'File "{script}", line 9, in validate'), traceback  # procflow's own frames left out


@task
def sigint_disposition():
    import signal

    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_workers_ignore_sigint_so_the_parent_decides_on_ctrl_c():
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def body():
        return sigint_disposition.submit()

    assert values(body()) is True


@task
def step(x):
    import time

    time.sleep(0.05)
    return x + 1


def test_fused_chain_links_wait_for_their_upstream_not_in_a_queue():
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def chain():
        value = step.submit(0)
        for _ in range(5):
            value = step.submit(value)
        return value

    assert values(chain()) == 6
    runs = chain.last_run.task_runs
    for before, after in itertools.pairwise(runs):
        assert after.start_time >= before.end_time
        assert after.timings["waiting"] >= 0.04, "waiting for the upstream counts as waiting"
        assert after.timings["queued"] < 0.04, "not as queued"


@task
def long_run(seconds: float) -> tuple[float, float]:
    """Its own start and end, by the clock every process shares."""
    started = time.time()
    time.sleep(seconds)
    return started, time.time()


@task
def short_run(i: int) -> tuple[int, float]:
    time.sleep(0.2)
    return os.getpid(), time.time()


def test_short_runs_do_not_queue_behind_a_long_one_while_another_worker_is_free():
    """Each worker has its own queue now: a batch goes where it is expected to run soonest,
    not to a worker busy with a run that has gone on for long (head-of-line blocking)."""

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def body():
        long = long_run.submit(2.5)
        deadline = time.monotonic() + 60
        while long.state.is_pending() and time.monotonic() < deadline:  # it runs in a worker now
            time.sleep(0.01)
        time.sleep(0.6)  # it has run for a while
        shorts = [short_run.submit(i) for i in range(3)]
        return long.result(), [short.result() for short in shorts]

    for attempt in range(2):  # a race is tested by repeating it
        (long_start, long_end), shorts = body()
        short_ends = [end for _, end in shorts]
        assert max(short_ends) < long_end, (
            f"attempt {attempt}: a short run waited for the long one: it ended at "
            f"{long_end - long_start:.1f} s, the last short run at {max(short_ends) - long_start:.1f} s")
        assert len({pid for pid, _ in shorts}) == 1, "the short runs all ran on the free worker"


@task
def sleep_then_stamp(seconds: float) -> tuple[int, float]:
    time.sleep(seconds)
    return os.getpid(), time.time()


def test_no_run_waits_behind_a_run_that_turns_out_long_while_another_worker_is_free():
    """Runs of 0.2 s, then one of 2 s: a worker's queue holds a second batch only behind work
    about to end (tiny runs), so no 0.2 s run is caught behind the long one when it overruns."""

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def body():
        return [future.result() for future in sleep_then_stamp.map([0.2, 0.2, 2.0] + [0.2] * 4)]

    for attempt in range(2):  # a race is tested by repeating it
        stamps = body()
        long_end = stamps[2][1]
        late = [end - long_end for _, end in stamps[3:] if end > long_end]
        assert not late, f"attempt {attempt}: runs ended {late} s after the long run (behind it)"


def test_every_worker_starts_with_the_first_batch_as_a_shared_pool_did():
    """A fan-out that comes after a first lone run must not wait for its workers to start."""
    from procflow.runners import processes

    @task
    def which() -> int:
        return os.getpid()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=3))
    def one_run():
        return which.submit().result()

    one_run()
    assert len(processes._pool[1].pids()) == 3, "a worker per slot is running after one run"


def test_after_every_slot_was_shut_one_batch_brings_the_whole_pool_back():
    """A cancel (Ctrl-C, a flow's timeout) shuts every slot; the next batch, wherever it goes,
    starts every worker again, as a shared pool's rebuild did, not only its own."""
    from loky import ProcessPoolExecutor

    from procflow.runners.slots import WorkerSlots

    slots = WorkerSlots(2, lambda: ProcessPoolExecutor(max_workers=1))
    try:
        future, _ = slots.submit(0, os.getpid)
        first = future.result(timeout=60)
        slots.done(0)
        slots.shutdown(wait=True, kill_workers=True)
        future, _ = slots.submit(0, os.getpid)
        second = future.result(timeout=60)
        slots.done(0)
        assert second != first, "slot 0 has a new worker"
        deadline = time.monotonic() + 30
        while len([pid for pid in slots.pids() if psutil.pid_exists(pid)]) < 2:
            assert time.monotonic() < deadline, f"only {slots.pids()} came back"
            time.sleep(0.05)
    finally:
        slots.shutdown(wait=True)


def test_a_task_modules_import_in_the_worker_counts_as_loading_its_code_not_moving_data(tmp_path, monkeypatch):
    """A task's first run in a worker imports the task's module (pandas, say: ~0.3 s). That
    time was reported as moving data, which blamed shared memory for an import."""
    (tmp_path / "slow_to_import.py").write_text(textwrap.dedent("""
        import time
        time.sleep(0.6)

        def work(x):
            return x + 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import slow_to_import

    from procflow.run_summary import summarise

    work = task(slow_to_import.work)
    runner = ProcessPoolTaskRunner(max_workers=1, worker_env={"PYTHONPATH": str(tmp_path)})

    @flow(task_runner=runner)
    def twice():
        return [work.submit(1).result(), work.submit(2).result()]

    assert twice() == [2, 3]
    first, second = twice.last_run.task_runs
    assert first.timings["loading"] >= 0.5, first.timings
    assert first.timings["transfer"] < 0.3 and first.timings["queued"] < 0.3, first.timings
    assert second.timings["loading"] < 0.3, "the worker loads a task's function once"
    summary = summarise(twice.last_run)
    assert summary.tasks[0].parts["loading"] >= 0.5
