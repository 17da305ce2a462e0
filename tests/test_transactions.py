"""Prefect's transactions (`procflow.transactions`): task runs grouped by `with transaction():`
commit or roll back together; `on_commit` / `on_rollback` hooks run in the flow's process,
with what the task set in its transaction, wherever the task ran."""

import os
import time

import pytest

from procflow import flow, task
from procflow.results import ResultStore
from procflow.task_runners import ProcessPoolTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner
from procflow.transactions import (
    AsyncTransaction,
    CommitMode,
    Transaction,
    TransactionState,
    get_transaction,
    transaction,
)

RUNNERS = {"process": lambda: ProcessPoolTaskRunner(max_workers=2), "thread": lambda: ThreadPoolTaskRunner(4),
           "sequential": SequentialTaskRunner}


def _events_task(events):
    """A task that records, with its worker's pid, what it set; and hooks that record when they run."""

    @task
    def step(name):
        get_transaction().set("made_in", os.getpid())
        get_transaction().set("name", name)
        return name

    @step.on_commit
    def committed(txn):
        events.append(("commit", txn.get("name"), txn.get("made_in"), time.time()))

    @step.on_rollback
    def rolled_back(txn):
        events.append(("rollback", txn.get("name"), txn.get("made_in"), time.time()))

    return step


def test_a_failed_run_rolls_back_what_its_transaction_staged_newest_first_with_the_values_each_task_set(
        runner, request):
    events = []
    step = _events_task(events)

    @task
    def breaks():
        raise RuntimeError("the load failed")

    @breaks.on_rollback
    def never(txn):
        events.append(("rollback", "breaks", None, time.time()))

    @flow(task_runner=runner)
    def pipeline():
        with transaction():
            first = step.submit("extract")
            first.wait()
            second = step.submit("transform", wait_for=[first])
            second.wait()
            breaks.submit(wait_for=[second]).wait()

    state = pipeline(return_state=True)

    assert state.is_failed()
    assert [(kind, name) for kind, name, _, _ in events] == [("rollback", "transform"), ("rollback", "extract")]
    if request.node.callspec.params["runner"] in ("process", "dask"):  # back from the worker that ran each task
        assert all(pid != os.getpid() for _, _, pid, _ in events)
    else:
        assert all(pid == os.getpid() for _, _, pid, _ in events)


def test_commit_hooks_run_when_the_block_ends_not_when_each_run_completes(runner):
    events = []
    step = _events_task(events)
    marks = {}

    @flow(task_runner=runner)
    def pipeline():
        with transaction():
            futures = [step.submit(name) for name in ("a", "b", "c")]
            for future in futures:
                future.wait()
            marks["runs_done"] = time.time()
            marks["events_then"] = list(events)
        marks["block_ended"] = time.time()
        return [future.result() for future in futures]

    assert pipeline() == ["a", "b", "c"]
    assert marks["events_then"] == []  # all three completed, none committed yet
    assert sorted(name for kind, name, _, _ in events if kind == "commit") == ["a", "b", "c"]
    assert all(marks["runs_done"] <= at <= marks["block_ended"] for _, _, _, at in events)


def test_without_a_transaction_a_runs_commit_hook_runs_before_its_future_resolves(runner):
    events = []
    step = _events_task(events)

    @flow(task_runner=runner)
    def pipeline():
        future = step.submit("alone")
        value = future.result()
        return value, list(events)

    value, seen = pipeline()
    assert value == "alone"
    assert [(kind, name) for kind, name, _, _ in seen] == [("commit", "alone")]


def test_a_parents_values_reach_a_task_in_a_worker_as_a_copy_and_its_own_stay_its_own():
    @task
    def reads():
        txn = get_transaction()
        before = txn.get("setting")
        txn.set("setting", "changed in the task")
        return before, txn.get("setting"), txn.get("missing", "default")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline():
        with transaction() as outer:
            outer.set("setting", {"threshold": 3})
            seen = reads.submit().result()
            return seen, outer.get("setting")

    seen, outer_after = pipeline()
    assert seen == ({"threshold": 3}, "changed in the task", "default")
    assert outer_after == {"threshold": 3}


def test_a_value_that_cannot_travel_to_a_worker_is_left_out_and_the_run_still_runs():
    import threading

    @task
    def reads():
        return get_transaction().get("lock", "not here")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline():
        with transaction() as outer:
            outer.set("lock", threading.Lock())  # cannot be pickled
            return reads.submit().result()

    assert pipeline() == "not here"


def test_eager_commits_at_its_own_end_lazy_waits_for_the_outer_and_off_rolls_back():
    log = []

    @task
    def step(name):
        return name

    @step.on_commit
    def committed(txn):
        log.append(("commit", txn.key))

    @step.on_rollback
    def rolled_back(txn):
        log.append(("rollback", txn.key))

    @flow(task_runner=ThreadPoolTaskRunner(2))
    def pipeline():
        with transaction():
            with transaction(commit_mode=CommitMode.EAGER):
                step("eager")
            log.append(("eager block ended", None))
            step("lazy")
            log.append(("outer block ending", None))
        with transaction(commit_mode=CommitMode.OFF):
            step("off")

    pipeline()
    assert log == [("commit", None), ("eager block ended", None), ("outer block ending", None), ("commit", None),
                   ("rollback", None)]


def test_a_commit_hook_that_fails_rolls_its_run_back_and_the_run_stays_completed(caplog):
    calls = []

    @task
    def step():
        return 1

    @step.on_commit
    def fails(txn):
        raise ValueError("the commit hook broke")

    @step.on_rollback
    def undone(txn):
        calls.append("rollback")

    @flow(task_runner=ThreadPoolTaskRunner(2))
    def pipeline():
        return step.submit(return_state=True)

    state = pipeline()
    assert state.is_completed()
    assert calls == ["rollback"]
    assert "An error was encountered while committing transaction" in caplog.text


def test_a_direct_calls_result_is_stored_only_when_its_transaction_commits(tmp_path):
    store = tmp_path / "results"
    seen = {}

    @task(persist_result=True, result_storage=store, result_storage_key="first.pkl")
    def first():
        return {"rows": 3}

    @task
    def boom():
        raise RuntimeError("stop")

    @flow
    def commits():
        with transaction():
            first()
            seen["inside"] = (store / "first.pkl").exists()
        seen["after"] = (store / "first.pkl").exists()

    commits()
    assert seen == {"inside": False, "after": True}

    (store / "first.pkl").unlink()

    @flow
    def rolls_back():
        with transaction():
            first()
            boom()

    assert rolls_back(return_state=True).is_failed()
    assert not (store / "first.pkl").exists()


def test_a_keyed_transaction_is_a_record_a_later_one_finds_committed(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    with transaction(key="nightly-load", store=store) as first:
        assert not first.is_committed()
        first.stage({"loaded": 120})
    assert first.is_committed()

    with transaction(key="nightly-load", store=store) as again:
        assert again.is_committed()
        assert again.read().result == {"loaded": 120}
    with transaction(key="nightly-load", store=store, overwrite=True) as redo:
        assert not redo.is_committed()
    assert store.read("nightly-load").metadata.storage_key == str(tmp_path / "nightly-load")  # its entry


def test_the_context_manager_rules_hold_for_sync_and_async_transactions():
    with pytest.raises(ValueError, match="inner"):
        with Transaction() as outer:
            with Transaction() as inner:
                assert get_transaction() is inner and inner.get_parent() is outer
                raise ValueError("inner")
    assert outer.is_rolled_back() and inner.is_rolled_back() and get_transaction() is None
    with pytest.raises(NotImplementedError):
        with AsyncTransaction():
            pass

    import asyncio

    async def main():
        async with AsyncTransaction() as txn:
            txn.stage("x")
        return txn.state

    assert asyncio.run(main()) is TransactionState.COMMITTED


def test_a_submitted_runs_result_is_stored_when_its_transaction_commits_and_never_if_it_rolls_back(runner, tmp_path):
    import numpy as np

    store = tmp_path / "results"
    seen = {}

    @task(persist_result=True, result_storage=store, result_storage_key="part-{parameters[i]}.pkl")
    def part(i):
        return np.full(300_000, i, dtype=np.float64)  # 2.4 MB: shared memory on the process runner

    @task
    def load(parts, fail):
        if fail:
            raise RuntimeError("the load failed")
        return float(sum(p.sum() for p in parts))

    @flow(task_runner=runner)
    def pipeline(fail):
        with transaction():
            parts = [part.submit(i) for i in range(3)]
            for p in parts:
                p.wait()
            seen["while_open"] = sorted(path.name for path in store.glob("part-*"))
            total = load.submit(parts, fail)
            total.wait()
        return total.result() if not fail else None

    assert pipeline(fail=True, return_state=True).is_failed()
    assert seen["while_open"] == []
    assert sorted(path.name for path in store.glob("part-*")) == []  # rolled back: nothing was stored

    assert pipeline(fail=False) == 3 * 300_000.0
    assert seen["while_open"] == []
    assert sorted(path.name for path in store.glob("part-*")) == ["part-0.pkl", "part-1.pkl", "part-2.pkl"]

    @flow(task_runner=runner)
    def again():
        return [part.submit(i, return_state=True).name for i in range(3)]

    assert again() == ["Cached", "Cached", "Cached"]


@pytest.mark.parametrize("runner", ["process", "thread"])
def test_runs_still_running_when_the_block_ends_commit_once_each_as_they_end_repeated(runner, tmp_path):
    import random

    commits = []

    @task(persist_result=True, result_storage=tmp_path, result_storage_key="{parameters[round]}-{parameters[i]}")
    def slow(round, i, delay):
        time.sleep(delay)
        return i

    @slow.on_commit
    def committed(txn):
        commits.append(txn.key)

    @flow(task_runner=RUNNERS[runner]())
    def pipeline(round):
        rng = random.Random(round)
        with transaction():
            futures = [slow.submit(round, i, rng.choice([0.0, 0.0, 0.002, 0.01])) for i in range(40)]
            futures[0].wait()  # some have ended, most are running or waiting
        return [future.result() for future in futures]

    for round in range(5):
        commits.clear()
        assert pipeline(round) == list(range(40))
        assert sorted(commits) == sorted(f"{round}-{i}" for i in range(40))  # each once
        assert sorted(path.name for path in tmp_path.glob(f"{round}-*")) == sorted(f"{round}-{i}" for i in range(40))


def test_a_run_that_fails_then_succeeds_on_a_retry_rolls_nothing_back(runner, tmp_path):
    events = []
    step = _events_task(events)
    marker = tmp_path / "tried"

    @task(retries=1)
    def flaky():
        if not marker.exists():
            marker.touch()
            raise RuntimeError("first attempt")
        return "second attempt"

    @flow(task_runner=runner)
    def pipeline():
        with transaction():
            step.submit("before").wait()
            return flaky.submit().result()

    assert pipeline() == "second attempt"
    assert [(kind, name) for kind, name, _, _ in events] == [("commit", "before")]


class _CountsItsPickles:
    pickled = 0

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        type(self).pickled += 1
        return (_CountsItsPickles, (self.data,))


def test_a_maps_runs_get_the_parents_values_pickled_once_not_once_per_run():
    @task
    def reads(i):
        return get_transaction().get("lookup").data[i % 3]

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline():
        with transaction() as outer:
            outer.set("lookup", _CountsItsPickles(["a", "b", "c"]))
            first = reads.map(range(200)).result()
            outer.set("lookup", _CountsItsPickles(["x", "y", "z"]))  # changed: copied again, once
            second = reads.map(range(3)).result()
        return first, second

    _CountsItsPickles.pickled = 0
    first, second = pipeline()
    assert first == ["a", "b", "c"] * 66 + ["a", "b"] and second == ["x", "y", "z"]
    assert _CountsItsPickles.pickled == 2


def test_a_transaction_a_task_opens_itself_commits_when_the_task_completes(runner, tmp_path):
    @task
    def records(name, fails):
        with transaction(key=name, store=ResultStore(result_storage=tmp_path)) as txn:
            txn.stage({"written_by": os.getpid()})
        if fails:
            raise RuntimeError("after the inner block")
        return os.getpid()

    @flow(task_runner=runner)
    def pipeline():
        ok = records.submit("kept", False)
        broken = records.submit("dropped", True)
        return ok.result(), broken.wait()

    ran_in, _ = pipeline()
    store = ResultStore(result_storage=tmp_path)
    assert store.read("kept").result == {"written_by": ran_in}
    assert not store.exists("dropped")


def test_a_transaction_that_cannot_end_is_logged_and_the_run_still_ends_with_its_state_hooks(
        runner, monkeypatch, caplog):
    from procflow import task_transactions

    def broken(self):
        raise RuntimeError("procflow's own bug")

    completions = []

    @task(on_completion=[lambda task, run, state: completions.append(run.name)])
    def step():
        return 7

    @step.on_commit
    def never(txn):
        completions.append("commit")

    @flow(task_runner=runner)
    def pipeline():
        return step.submit().result(), step(), completions

    monkeypatch.setattr(task_transactions.RunTransaction, "opened", broken)
    submitted, called, seen = pipeline()
    assert (submitted, called) == (7, 7)
    assert sorted(seen) == ["step-0", "step-1"]
    assert caplog.text.count("Its transaction could not end") == 2


def test_a_stored_result_reads_back_from_its_bytes_as_prefects_result_record(tmp_path):
    import numpy as np

    from procflow.filesystems import LocalFileSystem
    from procflow.results import ResultRecord

    storage = LocalFileSystem(basepath=tmp_path)

    @task(result_storage=storage, result_storage_key="nightly-{parameters[n]}", persist_result=True)
    def measure(n):
        return {"n": n, "samples": np.arange(n, dtype=np.float64)}  # a buffer stored outside the pickle

    @flow
    def nightly():
        with transaction():
            measure(100_000)

    nightly()
    content = storage.read_path("nightly-100000")
    record = ResultRecord.deserialize(content)
    assert record.result["n"] == 100_000 and record.result["samples"][-1] == 99_999
    assert record.metadata.storage_key == "nightly-100000" and record.metadata.expiration is None
    with pytest.raises(ValueError, match="not a stored procflow result: its pickle is damaged"):
        ResultRecord.deserialize(_flipped(content))


def _flipped(content: bytes) -> bytes:
    """The entry with one byte of its pickle changed (the pickle follows the header)."""
    from procflow.results.entries import _parsed_header

    header = _parsed_header(lambda nbytes, offset: content[offset:offset + nbytes], len(content))
    start = header.pickle[0] + 2
    return content[:start] + bytes([content[start] ^ 0xFF]) + content[start + 1:]
