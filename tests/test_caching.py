"""Issue 20: results that outlive the run. Prefect 3.8's caching rules, the store on disk, its
safety under concurrency and faults, and large results mapped back without a copy.

Each test has a store of its own (`conftest.result_store`); a task counts its executions by
appending to a file, so that runs in other processes are counted too.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from procflow import flow, task
from procflow.cache_policies import DEFAULT, FLOW_PARAMETERS, INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE, CachePolicy
from procflow.results.entries import TEMPORARY, read_header, verify_entry
from procflow.results.store import entries
from procflow.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
from procflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


def counted(path: Path, value):
    with open(path, "a") as calls:
        calls.write(f"{value}\n")
    return value


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def stored(directory: Path) -> list[Path]:
    return [path for path, _, _ in entries(directory)]


# -- Prefect 3.8's rules ------------------------------------------------------------

def test_persist_result_alone_caches_a_repeated_call_within_a_flow_run_not_across_runs(tmp_path, runner):
    calls = tmp_path / "calls"

    @task(persist_result=True)
    def double(x, path):
        return counted(path, x) * 2

    @flow(task_runner=runner)
    def twice():
        first = double(4, calls, return_state=True)
        second = double.submit(4, calls)
        second.wait()
        return first, second.state

    first, second = twice()
    assert (first.name, second.name, first.result(), second.result()) == ("Completed", "Cached", 8, 8)
    assert count(calls) == 1
    again, _ = twice()  # a new flow run: DEFAULT keys by the flow run's id
    assert again.name == "Completed" and count(calls) == 2


def test_a_flow_retry_does_not_run_again_the_tasks_whose_results_persisted(tmp_path):
    calls = tmp_path / "calls"

    @task(persist_result=True)
    def step(x, path):
        return counted(path, x)

    @flow(retries=1)
    def flaky():
        step(1, calls)
        if count(calls) == 1 and not (tmp_path / "failed-once").exists():
            (tmp_path / "failed-once").touch()
            raise RuntimeError("the first attempt fails after its task ran")
        return step(1, calls, return_state=True)

    state = flaky()
    assert state.name == "Cached" and state.result() == 1
    assert count(calls) == 1


def test_a_parent_flow_retry_does_not_run_again_a_subflow_that_completed_and_persists(tmp_path):
    calls = tmp_path / "calls"

    @flow(persist_result=True)
    def child(x):
        return counted(calls, x)

    @flow(retries=1)
    def parent():
        first = child(1)
        child(2)
        if not (tmp_path / "failed-once").exists():
            (tmp_path / "failed-once").touch()
            raise RuntimeError("the first attempt fails after its subflows ran")
        return first

    assert parent() == 1
    assert calls.read_text().split() == ["1", "2"]


def test_inputs_on_a_task_without_parameters_never_caches(tmp_path, result_store):
    calls = tmp_path / "calls"

    @task(cache_policy=INPUTS)
    def constant():
        return counted(calls, 1)

    @flow
    def twice():
        return constant(return_state=True), constant(return_state=True)

    assert [state.name for state in twice()] == ["Completed", "Completed"]
    assert count(calls) == 2 and stored(result_store) == []


def test_no_cache_with_persistence_writes_nothing(tmp_path, result_store):
    @task(cache_policy=NO_CACHE, persist_result=True)
    def plain(x):
        return x

    @flow
    def run():
        return plain(1, return_state=True), plain.submit(1).result()

    first, second = run()
    assert first.name == "Completed" and second == 1
    assert stored(result_store) == []


def test_the_option_rules_are_prefects():
    def fn(x):
        return x

    assert task(fn).cache_policy == DEFAULT and task(fn).persist_result is None
    assert task(persist_result=False)(fn).cache_policy == NO_CACHE
    assert task(cache_policy=TASK_SOURCE)(fn).persist_result is True
    assert task(cache_key_fn=lambda *_: "k")(fn).persist_result is True
    keyed = task(result_storage_key="out-{parameters[x]}")(fn)
    assert keyed.persist_result is True and keyed.cache_policy is None
    assert task(cache_policy=INPUTS + TASK_SOURCE - "x")(fn).cache_policy.policies[-1].exclude == ["x"]
    assert task(fn).with_options(name="other").cache_policy == DEFAULT
    assert isinstance(CachePolicy.from_cache_key_fn(lambda *_: "k"), CachePolicy)
    with pytest.raises(TypeError, match="result_storage='local-file-system/x' names a Prefect storage block"):
        task(result_storage="local-file-system/x")(fn)
    with pytest.raises(TypeError, match="cache_expiration must be a datetime.timedelta"):
        task(cache_expiration=5)(fn)


def test_two_different_tasks_with_the_same_inputs_never_share_an_entry(tmp_path):
    """Prefect shares one INPUTS entry between different tasks; procflow keys by task too."""
    @task(cache_policy=INPUTS)
    def add_one(x):
        return x + 1

    @task(cache_policy=INPUTS)
    def add_two(x):
        return x + 2

    @flow
    def both():
        return add_one(1), add_two(1)

    assert both() == (2, 3)
    assert both() == (2, 3)


def test_a_cache_key_fn_key_is_shared_by_the_tasks_that_return_it():
    @task(cache_key_fn=lambda *_: "shared")
    def first(x):
        return x

    @task(cache_key_fn=lambda *_: "shared")
    def second(x):
        return x

    @flow
    def both():
        return first(1, return_state=True), second(2, return_state=True)

    one, two = both()
    assert (one.name, two.name, two.result()) == ("Completed", "Cached", 1)


def test_a_cached_run_logs_prefects_line_and_its_body_does_not_run(tmp_path, log_lines):
    calls = tmp_path / "calls"

    @task(cache_policy=INPUTS)
    def work(x, path):
        return counted(path, x)

    @flow
    def run():
        return work.submit(3, calls)

    assert run().result() == 3 and run().result() == 3
    assert count(calls) == 1
    assert any("Finished in state Cached(type=COMPLETED)" in line for line in log_lines)


def test_expiration_and_refresh(tmp_path):
    calls = tmp_path / "calls"

    @task(cache_policy=INPUTS, cache_expiration=datetime.timedelta(seconds=1))
    def short_lived(x, path):
        return counted(path, x)

    @flow
    def run():
        return short_lived(1, calls, return_state=True)

    assert run().name == "Completed" and run().name == "Cached"
    time.sleep(1.5)
    assert run().name == "Completed" and count(calls) == 2

    refreshing = short_lived.with_options(refresh_cache=True, cache_expiration=datetime.timedelta(days=1))

    @flow
    def refreshed():
        return refreshing(1, calls, return_state=True)

    assert refreshed().name == "Completed" and refreshed().name == "Completed"
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        assert run().name == "Completed"
    assert count(calls) == 5


def test_result_storage_key_names_the_file_and_caches_across_runs(tmp_path, result_store):
    calls = tmp_path / "calls"

    @task(result_storage_key="reports/{flow_run.flow_name}-{parameters[day]}.pkl")
    def report(day, path):
        return counted(path, day.upper())

    @flow
    def daily(day):
        return report(day, calls, return_state=True)

    assert daily("mon").name == "Completed" and daily("mon").name == "Cached"
    assert daily("tue").result() == "TUE" and count(calls) == 2
    assert sorted(path.name for path in (result_store / "reports").iterdir()) == ["daily-mon.pkl", "daily-tue.pkl"]


def test_result_storage_is_a_local_directory_and_the_flows_persist_result_reaches_its_tasks(tmp_path):
    where = tmp_path / "elsewhere"

    @task
    def plain(x):
        return x * 3

    @flow(persist_result=True, result_storage=where)
    def run():
        return plain(2, return_state=True), plain(2, return_state=True)

    first, second = run()
    assert (first.name, second.name, second.result()) == ("Completed", "Cached", 6)
    assert len(stored(where)) == 1
    assert oct(where.stat().st_mode & 0o777) == "0o700"
    assert all(oct(path.stat().st_mode & 0o777) == "0o600" for path in stored(where))


def test_the_storage_location_is_read_when_a_flow_run_starts(tmp_path, monkeypatch):
    @task(cache_policy=INPUTS)
    def value(x):
        return x

    @flow
    def run():
        return value(1)

    monkeypatch.delenv("PROCFLOW_RESULTS_LOCAL_STORAGE_PATH")
    for name in ("PREFECT_LOCAL_STORAGE_PATH", "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
                 "PROCFLOW_RESULTS_LOCAL_STORAGE_PATH"):  # each later one wins over those before
        monkeypatch.setenv(name, str(tmp_path / name))
        run()
        assert len(stored(tmp_path / name)) == 1, name


# -- across processes, concurrency and faults -------------------------------------------

SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from procflow import flow, task
    from procflow.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def expensive(n, calls, pause):
        with open(calls, "a") as f:
            f.write("ran\\n")
        time.sleep(pause)
        return np.arange(n, dtype=np.float64)

    @task
    def total(values):
        return float(values.sum())

    @flow
    def pipeline(n, calls, pause):
        return total.submit(expensive.submit(n, calls, pause))

    if __name__ == "__main__":
        print("total", pipeline(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])).result(), flush=True)
""")


def run_script(tmp_path: Path, *args: str, wait: bool = True):
    script = tmp_path / "cached_pipeline.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_a_script_run_twice_executes_no_cached_task_body_the_second_time(tmp_path):
    calls = tmp_path / "calls"
    first = run_script(tmp_path, "300000", str(calls), "0")
    second = run_script(tmp_path, "300000", str(calls), "0")
    expected = f"total {float(np.arange(300000).sum())}"
    assert expected in first.stdout and expected in second.stdout, first.stderr + second.stderr
    assert count(calls) == 1
    assert "Cached(type=COMPLETED)" in second.stderr + second.stdout


@pytest.mark.parametrize("attempt", range(3))  # a race: repeated
def test_two_processes_computing_the_same_key_at_once_both_succeed_and_agree(tmp_path, result_store, attempt):
    calls = tmp_path / "calls"
    both = [run_script(tmp_path, "200000", str(calls), "1", wait=False) for _ in range(2)]
    outputs = [process.communicate(timeout=180) for process in both]
    expected = f"total {float(np.arange(200000).sum())}"
    assert all(expected in out for out, _ in outputs), outputs
    assert count(calls) == 2  # both ran: neither saw the other's entry yet
    assert len(stored(result_store)) == 1 and not list(result_store.glob(TEMPORARY + "*"))
    third = run_script(tmp_path, "200000", str(calls), "1")  # the same inputs: served
    assert expected in third.stdout and count(calls) == 2


def test_a_writer_killed_mid_write_never_leaves_a_partial_entry(tmp_path, result_store):
    """SIGKILL to the worker process while it writes a 400 MB entry: readers never see part of
    it (only its temporary file is left), and the next write sweeps that file away."""
    calls = tmp_path / "calls"
    script = run_script(tmp_path, str(50_000_000), str(calls), "0", wait=False)
    deadline, partial = time.time() + 120, []
    while time.time() < deadline and not partial:
        partial = list(result_store.glob(TEMPORARY + "*"))
        time.sleep(0.005)
    assert partial, "the writer never began its entry"
    writer = int(partial[0].name[len(TEMPORARY):].split("-")[0])
    os.kill(writer, signal.SIGKILL)
    script.communicate(timeout=180)  # the flow ends either way (the run crashed, or ran again)
    for entry in stored(result_store):  # any entry there is whole
        verify_entry(str(entry), read_header(str(entry)))
    again = run_script(tmp_path, "1000", str(calls), "0")
    assert "total 499500.0" in again.stdout, again.stderr
    assert not [path for path in result_store.glob(TEMPORARY + "*") if path.name.startswith(f"{TEMPORARY}{writer}-")]


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "garbage", "remove"])
def test_a_damaged_or_removed_entry_is_computed_again_with_one_warning(tmp_path, result_store, log_lines, damage):
    calls = tmp_path / "calls"

    @task(cache_policy=INPUTS)
    def array(n, path):
        counted(path, n)
        return np.arange(n, dtype=np.int64)

    @flow
    def run():
        return int(array(100_000, calls).sum())

    assert run() == sum(range(100_000))
    [entry] = stored(result_store)
    size = entry.stat().st_size
    if damage == "truncate":
        os.truncate(entry, size - 100)
    elif damage == "overwrite":
        with open(entry, "r+b") as file:
            file.seek(size - 5000)
            file.write(b"\xff" * 64)
    elif damage == "garbage":
        entry.write_bytes(os.urandom(size))
    else:
        entry.unlink()
    assert run() == sum(range(100_000))
    assert count(calls) == 2
    warnings = [line for line in log_lines if "cannot be used" in line]
    assert len(warnings) == (0 if damage == "remove" else 1), warnings
    read_header(str(entry))  # rewritten whole
    assert run() == sum(range(100_000)) and count(calls) == 2


def test_a_file_size_limit_falls_back_to_not_caching_with_one_warning(tmp_path):
    """A full disk or quota (here `ulimit -f`): every result is still right, one warning says
    why nothing is cached."""
    script = tmp_path / "limited.py"
    script.write_text(textwrap.dedent("""
        import resource, signal, sys
        import numpy as np
        from procflow import flow, task
        from procflow.cache_policies import INPUTS
        from procflow.task_runners import ThreadPoolTaskRunner

        @task(cache_policy=INPUTS)
        def big(i):
            return np.full(1 << 20, float(i))

        @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
        def run():
            return [float(big(i).sum()) for i in range(4)]

        if __name__ == "__main__":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
            print(run())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str([float(i * (1 << 20)) for i in range(4)]) in done.stdout
    assert done.stderr.count("are not cached") == 1, done.stderr


# -- large results: stored raw, mapped back --------------------------------------------

def test_a_large_cached_array_reaches_its_consumer_mapped_from_the_store_without_a_copy(tmp_path, result_store):
    @task(cache_policy=INPUTS)
    def make(n):
        return np.arange(n, dtype=np.float64)

    @task
    def inspect_it(values):
        base = values
        while getattr(base, "base", None) is not None and not isinstance(base, (memoryview, bytes)):
            base = base.base
        mapped = isinstance(base, memoryview) and "mmap" in repr(base.obj.__class__)
        values[0] = -1.0  # copy-on-write: the store is never written through
        return mapped, not values.flags.owndata, float(values[1:].sum())

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def run():
        return inspect_it.submit(make.submit(4_000_000)).result()

    expected = float(np.arange(4_000_000)[1:].sum())
    assert run() == (True, True, expected)
    [entry] = stored(result_store)
    header = read_header(str(entry))
    assert header.buffers and header.buffers[0][1] == 4_000_000 * 8
    assert run() == (True, True, expected)  # served from the store: unchanged by the writes
    parent_copy = make.with_options()  # a direct call in the flow's process reads it too

    @flow
    def read_here():
        return parent_copy(4_000_000)

    assert float(read_here()[0]) == 0.0


def test_threads_runner_results_persist_too(tmp_path):
    calls = tmp_path / "calls"

    @task(cache_policy=INPUTS)
    def work(x, path):
        return counted(path, x) * 2

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def run():
        return [work.submit(i, calls).result() for i in range(3)]

    assert run() == [0, 2, 4] and run() == [0, 2, 4]
    assert count(calls) == 3


def test_policies_compose_as_in_prefect():
    context = type("Ctx", (), {"task": type("T", (), {"fn": staticmethod(counted)})(),
                               "task_run": type("R", (), {"flow_run_id": "f1", "id": 3})()})()
    inputs = {"x": 1, "y": 2}
    key = (INPUTS + RUN_ID).compute_key(context, inputs, {})
    assert isinstance(key, str) and key != (INPUTS + RUN_ID).compute_key(
        context, {"x": 1, "y": 3}, {})  # other inputs, another key
    assert key != (INPUTS + TASK_SOURCE).compute_key(context, inputs, {})
    assert (INPUTS - "y").compute_key(context, inputs, {}) == INPUTS.compute_key(context, {"x": 1}, {})
    assert FLOW_PARAMETERS.compute_key(context, inputs, {}) is None
    assert NO_CACHE + INPUTS == INPUTS
    with pytest.raises(ValueError, match="objects that cannot be cached like locks"):
        import threading
        INPUTS.compute_key(context, {"lock": threading.Lock()}, {})


def test_the_cache_command_lists_sums_verifies_and_clears_by_task_and_age(tmp_path, result_store):
    @task(cache_policy=INPUTS)
    def kept(x):
        time.sleep(0.2)
        return np.full(1 << 16, x + 1)

    @task(cache_policy=INPUTS)
    def dropped(x):
        return x

    @flow
    def fill():
        return [float(kept(i).sum()) + dropped(i) for i in range(3)]  # noqa: B023

    fill()

    def cache(*words: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "procflow", "cache", *words], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "COLUMNS": "200"})

    listing = cache("ls").stdout
    assert listing.count("kept") == 3 and listing.count("dropped") == 3 and "never" in listing
    usage = cache("du").stdout
    assert "│ kept " in usage and "│ total " in usage and " 6 " in usage
    assert "6 of 6 entries are whole" in cache("verify").stdout
    assert "Removed 0 entries" in cache("clear", "--older-than", "1h").stdout
    assert "Removed 3 entries" in cache("clear", "--task", "dropped").stdout
    assert len(stored(result_store)) == 3
    bad = cache("ls", "--older-than", "soon")
    assert bad.returncode == 2 and "an age such as 90s" in bad.stderr
    [first, *_] = stored(result_store)
    with open(first, "r+b") as file:  # damage one: verify says which, and fails
        file.seek(-10, os.SEEK_END)
        file.write(b"\x00" * 10)
    checked = cache("verify")
    assert checked.returncode == 1 and "2 of 3 entries are whole" in checked.stdout
    assert "Removed 3 entries" in cache("clear").stdout and stored(result_store) == []


def test_the_end_table_and_the_records_count_cached_runs_and_the_time_they_saved():
    from procflow.console import end_table
    from rich.console import Console

    @task(cache_policy=INPUTS)
    def slow(x):
        time.sleep(0.3)
        return x

    @flow
    def run():
        return [slow(i) for i in range(2)]

    run()
    run()
    record = run.last_run
    [row] = record.summary()
    assert row["cached"] == 2 and row["cache_saved_s"] >= 0.5
    console = Console(record=True, width=120)
    console.print(end_table(record))
    assert re.search(r"2 runs served from the cache, saving (0\.[6-9]|1\.\d) s of run time", console.export_text())


class Planted:
    """A value whose unpickling runs code: what another user could plant as an entry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0 or not __import__("shutil").which("setpriv"),
                    reason="needs root and setpriv(1) to act as a second user")
def test_another_users_planted_entry_is_never_loaded(log_lines):
    """A second user (nobody) plants a valid-looking entry whose pickle would run code: in a
    directory others may write to, the store is not used; in our own directory, a file that is
    not ours is never loaded. Either way the task runs and the code never does."""
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="planted-"))  # outside pytest's 0700 tree: nobody must reach it
    try:
        _planted_entry_is_never_loaded(tmp_path, log_lines)
    finally:
        shutil.rmtree(tmp_path)


def _planted_entry_is_never_loaded(tmp_path: Path, log_lines: list[str]) -> None:
    from procflow.results.entries import write_entry

    marker = tmp_path / "pwned"
    template = tmp_path / "template"
    template.mkdir()
    write_entry(template / "planted.pkl", "planted.pkl", "victim", Planted(str(marker)), 0.0, None)
    os.chmod(tmp_path, 0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    os.chmod(template, 0o755)
    os.chmod(template / "planted.pkl", 0o644)
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cp",
                    str(template / "planted.pkl"), str(shared / "planted.pkl")], check=True, timeout=30)
    assert (shared / "planted.pkl").stat().st_uid == NOBODY

    @task(result_storage_key="planted.pkl", result_storage=shared)
    def victim():
        return "computed"

    @flow
    def in_shared():
        return victim(return_state=True)

    state = in_shared()
    assert (state.name, state.result()) == ("Completed", "computed")
    assert any("others may write to" in line for line in log_lines)

    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    planted = own / "planted.pkl"
    planted.write_bytes((template / "planted.pkl").read_bytes())
    os.chown(planted, NOBODY, NOBODY)
    os.chmod(planted, 0o600)

    @flow
    def in_own():
        return victim.with_options(result_storage=own)(return_state=True)

    state = in_own()
    assert (state.name, state.result()) == ("Completed", "computed")
    assert any("not this user's own file" in line for line in log_lines)
    assert not marker.exists()
    assert planted.stat().st_uid == os.geteuid()  # replaced by the run's own entry
    again = in_own()
    assert (again.name, again.result()) == ("Cached", "computed") and not marker.exists()
