"""The Dask runner against real clusters on loopback: per-flow LocalCluster and by address."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
from conftest import values

from procflow import flow, task, unmapped
from procflow.dask import DaskResult, DaskTaskRunner


@task(log_prints=True)
def make(n):
    print(f"making {n} on the cluster")
    return np.arange(n, dtype=np.float64)


@task
def where_and_sum(array):
    from distributed import get_worker

    return get_worker().address, float(array.sum())


def test_own_local_cluster_per_flow_run_results_stay_on_workers(log_lines):
    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 2}))
    def body():
        array = make.submit(1_000_000)
        seen = [where_and_sum.submit(array) for _ in range(2)]
        for future in seen:
            future.wait()
        return seen, array.state.data

    seen, stored = values(body())
    assert isinstance(stored, DaskResult), "the parent holds a Dask future, not the array"
    assert all(total == float(np.arange(1_000_000).sum()) for _, total in seen)
    runs = {run.name: run for run in body.last_run.task_runs}
    assert runs["make-0"].worker.startswith("tcp://127.0.0.1:")
    assert {address for address, _ in seen} <= {run.worker for run in runs.values()}
    assert "Task run 'make-0' - making 1000000 on the cluster" in log_lines


@task
def address_and_sum(array, i):
    """Where the array's data lives in this worker, and a sum that uses it."""
    return array.__array_interface__["data"][0], float(array.sum()) + i


def test_an_array_the_flow_passes_to_a_map_is_scattered_once():
    """One worker thread runs every child: with one scattered copy, they all see the same
    memory; embedded in each task, each child would unpickle its own."""
    data = np.arange(1 << 18, dtype=np.float64)  # 2 MB

    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1}))
    def body(array):
        return address_and_sum.map(unmapped(array), range(4)), address_and_sum.submit(array, 10)

    mapped, alone = values(body(data))
    assert [total for _, total in mapped] == [float(data.sum()) + i for i in range(4)]
    assert len({address for address, _ in mapped}) == 1
    assert alone[1] == float(data.sum()) + 10


def test_a_dead_dask_worker_crashes_only_its_run_and_retries_apply(tmp_path):
    marker = tmp_path / "died-once"

    @task
    def dies_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(9)
        return "recovered"  # Dask reschedules a task whose worker died, up to allowed-failures

    @task(retries=1)
    def always_dies():
        os._exit(9)

    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 2}))
    def body():
        # one after another: Dask charges a worker's death to every task queued on it
        before = make.submit(10)
        once = dies_once.submit(str(marker), wait_for=[before])
        once.result()  # read before always_dies kills workers: one may hold it (Dask then recomputes)
        return before, always_dies.submit(wait_for=[once])  # only futures: they count

    state = body(return_state=True)
    runs = {run.name: run for run in body.last_run.task_runs}
    assert runs["dies_once-0"].state.result() == "recovered"
    assert runs["always_dies-0"].state.is_crashed() and runs["always_dies-0"].attempts == 2  # procflow retried
    assert "Dask lost the worker" in runs["always_dies-0"].state.message
    assert runs["make-0"].state.is_completed()
    assert state.is_failed()


def test_cli_runs_a_flow_on_an_existing_cluster_by_address(dask_cluster, tmp_path):
    script = tmp_path / "on_cluster.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task, unmapped

        @task
        def square(x):
            return x * x

        @flow
        def squares(n: int = 4):
            return square.map(range(n))
    """))
    done = subprocess.run([sys.executable, "-m", "procflow", "run", str(script), "--runner", "dask", "--address",
                           dask_cluster.scheduler_address, "--", "--n", "5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Finished in state Completed('All states completed.')" in done.stderr


def test_a_result_read_after_its_flow_run_let_the_cluster_go_says_so(dask_cluster):
    """A held future keeps its value, also as an argument of a later flow run; a run nobody
    held is gone with the flow run's client."""
    kept = {}

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def body():
        kept["future"] = make.submit(10)
        make.submit(20).wait()  # its future is dropped

    body()
    assert kept["future"].result().tolist() == list(np.arange(10.0))
    dropped = body.last_run.task_runs[1].state
    with pytest.raises(RuntimeError, match="was released: its future was dropped, or its flow run ended"):
        dropped.result()

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def later(earlier):
        return where_and_sum.submit(earlier).result()[1]

    assert later(kept["future"]) == 45.0  # was Cancelled, "interrupted (Ctrl-C or SIGTERM)"


def test_a_task_dask_cancels_for_a_lost_input_is_crashed_saying_so_not_interrupted(dask_cluster):
    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def body():
        made = make.submit(10)
        made.wait()
        lost = made.task_run.state.data.future
        lost.client.cancel([lost])  # the cluster drops the value under procflow's feet
        used = where_and_sum.submit(made)
        used.wait()
        return used.state.name, used.state.message

    name, message = body()
    assert name == "Crashed"
    assert message == "Dask cancelled this task: an input it needed was released or lost on the cluster"


def test_ctrl_c_ends_a_flow_whose_dask_tasks_are_blocked_in_c_code(interrupt_blocked_flow):
    """Dask cannot cancel a task inside `time.sleep`: the workers of the runner's own cluster
    are ended instead; closing it politely took ~4 s of the 5 s a Ctrl-C may take."""
    code, elapsed, stderr, workers = interrupt_blocked_flow(["--runner", "dask", "--workers", "2"], 2)
    assert code == 130, stderr
    assert elapsed < 3, f"took {elapsed:.1f} s to stop"
    assert "Interrupted: 2 of 2 task runs did not finish" in stderr
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in workers):
        assert time.monotonic() < deadline, "Dask workers outlived the interrupted flow"
        time.sleep(0.1)


def test_a_script_calling_a_dask_flow_without_a_main_guard_is_told_why_the_cluster_failed(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from procflow import flow, task
        from procflow.dask import DaskTaskRunner

        @task
        def square(x):
            return x * x

        @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1}))
        def squares():
            return square.map(range(3)).result()

        print(squares())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    # Issue 19: one line, not Dask's and each worker process's tracebacks (502 lines).
    assert done.stderr.splitlines() == [
        "procflow: unguarded.py calls a flow with DaskTaskRunner at its top level: Dask's worker processes "
        'import the script again and cannot start; put that call under `if __name__ == "__main__":`'], done.stderr
    guarded = script.read_text().replace("print(squares())", 'if __name__ == "__main__":\n    print(squares())')
    script.write_text(guarded)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[0, 1, 4]", done.stderr


def test_a_module_missing_on_a_worker_is_named_with_the_worker(dask_cluster, tmp_path):
    """Issue 19: it read "Dask lost the worker running this task"."""
    (tmp_path / "helpers_only_here.py").write_text("def double(x):\n    return 2 * x\n")
    script = tmp_path / "uses_helper.py"
    script.write_text(textwrap.dedent("""
        import helpers_only_here
        from procflow import flow, task

        @task
        def work(x):
            return helpers_only_here.double(x)

        @flow
        def doubles():
            return work.map([1, 2])
    """))
    done = subprocess.run([sys.executable, "-m", "procflow", "run", str(script), "--runner", "dask", "--address",
                           dask_cluster.scheduler_address], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    workers = dask_cluster.scheduler_info["workers"]
    assert any(f"Dask worker {worker} cannot import module 'helpers_only_here', which this task needs"
               in done.stderr for worker in workers), done.stderr
    assert "lost the worker" not in done.stderr
