"""Issue 20: held large results move from /dev/shm to disk when memory runs short (forced
here with PROCFLOW_SPILL_BELOW_BYTES), and every reader still gets its value."""

from __future__ import annotations

import time

import numpy as np
import pytest

from procflow import flow, task
from procflow.ownership import current_token, owned_segments
from procflow.task_runners import ProcessPoolTaskRunner

SIZE = 1 << 20  # float64 items: 8 MB per result


@task
def make(i):
    return np.full(SIZE, float(i))


@task
def total(values):
    return float(values.sum())


def spilled(futures) -> bool:
    return all(getattr(future.task_run.state.data, "spilled", False) for future in futures)


def wait_until(predicate, seconds: float = 60.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_held_results_spill_to_disk_and_every_reader_still_gets_its_value(monkeypatch, result_store, log_lines):
    monkeypatch.setenv("PROCFLOW_SPILL_BELOW_BYTES", str(1 << 62))  # memory is always "short"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def hold():
        made = [make.submit(i) for i in range(4)]
        for future in made:
            future.wait()
        assert wait_until(lambda: spilled(made)), "the held results were not spilled"
        in_shm = len(owned_segments(current_token()))
        later = [total.submit(future) for future in made]  # consumers after the spill: read from disk
        spill_files = sorted(path.name for path in result_store.glob(".spill-*/*"))
        return in_shm, [future.result() for future in later], float(made[2].result()[0]), spill_files

    in_shm, sums, third, spill_files = hold()
    assert sums == [float(i * SIZE) for i in range(4)] and third == 2.0
    assert len(spill_files) == 4
    assert in_shm <= 2  # only segments pooled for reuse are left, not the held results
    assert any("spilled" in line and "held results" in line for line in log_lines)
    assert not list(result_store.glob(".spill-*")), "the spill directory outlived its flow run"


@pytest.mark.parametrize("attempt", range(3))  # a race: consumers dispatched while the spill runs
def test_consumers_dispatched_during_a_spill_read_the_right_values(monkeypatch, attempt):
    monkeypatch.setenv("PROCFLOW_SPILL_BELOW_BYTES", str(1 << 62))

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline():
        made = make.map(range(6))
        return [total.submit(future).result() for future in made]

    assert pipeline() == [float(i * SIZE) for i in range(6)]


def test_nothing_spills_while_memory_is_plentiful(monkeypatch, result_store):
    monkeypatch.setenv("PROCFLOW_SPILL_BELOW_BYTES", "0")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def hold():
        made = [make.submit(i) for i in range(2)]
        for future in made:
            future.wait()
        time.sleep(0.2)
        return [getattr(future.task_run.state.data, "spilled", None) for future in made]

    assert hold() == [False, False]
    assert not list(result_store.glob(".spill-*"))
