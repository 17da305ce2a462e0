"""Large results in shared memory: exact round trips, zero-copy read-only views, lifetimes."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from conftest import ValueFlow, values

from procflow import flow, task, unmapped, wait
from procflow.pickling import OutOfBand
from procflow.runners.segments import ArgumentSegments
from procflow.messages import Segment
from procflow.shm import PREFIX, SHM_DIR, ResultRef, SegmentWriter, WarmMappings, shm_free_bytes, unlink
from procflow.shm_pool import SegmentPool
from procflow.shm_read import SharedResultGone
from procflow.ownership import current_token, owned_segments, owner
from procflow.task_runners import ProcessPoolTaskRunner

MiB = 1 << 20


def process_flow(fn, **runner_options):
    return ValueFlow(flow(task_runner=ProcessPoolTaskRunner(max_workers=2, **runner_options))(fn))


@task
def make_array(n, dtype="float64", order="C"):
    return np.asfortranarray(np.arange(n, dtype=dtype).reshape(-1, 4)) if order == "F" else np.arange(n, dtype=dtype)


@task
def echo(value):
    return value


@task
def inspect_array(array):
    """What the consumer sees: its own view of the producer's array."""
    return {"writeable": array.flags.writeable, "owndata": array.flags.owndata, "sum": float(array.sum()),
            "pid": os.getpid()}


@task
def build_nested():
    return {"a": np.ones(300_000), "list": [np.full(200_000, 7, dtype=np.int32), b"x" * (2 * MiB)],
            "small": [1, "two", 3.0], "buffer": bytearray(b"y" * (3 * MiB))}


def test_arrays_bytes_and_nested_structures_round_trip_exactly():
    @process_flow
    def body():
        c = make_array.submit(1 << 20)
        f = make_array.submit(1 << 20, "int16", "F")
        raw = echo.submit(bytes(range(256)) * (8 * 1024))
        nested = build_nested.submit()
        passed_on = echo.submit(nested)  # crosses a second worker
        return c, f, raw, nested, passed_on

    c, f, raw, nested, passed_on = body()
    assert np.array_equal(c, np.arange(1 << 20, dtype="float64"))
    fortran = np.asfortranarray(np.arange(1 << 20, dtype="int16").reshape(-1, 4))
    assert f.flags.f_contiguous and np.array_equal(f, fortran)
    assert raw == bytes(range(256)) * (8 * 1024)
    for value in (nested, passed_on):
        assert np.array_equal(value["a"], np.ones(300_000))
        assert np.array_equal(value["list"][0], np.full(200_000, 7, dtype=np.int32))
        assert value["list"][1] == b"x" * (2 * MiB)
        assert value["small"] == [1, "two", 3.0]
        assert isinstance(value["buffer"], bytearray) and value["buffer"] == bytearray(b"y" * (3 * MiB))


@task
def make_frame(rows):
    import pandas as pd
    import pyarrow as pa

    columns = {"x": np.arange(rows, dtype="float64"), "group": np.arange(rows) % 3}
    when = np.datetime64("2025-01-01") + np.arange(rows).astype("timedelta64[s]")
    frame = pd.DataFrame({**columns, "when": when,  # issue 22: numpy pickles datetimes in band
                          "utc": pd.Series(when).dt.tz_localize("UTC"), "lag": when - when[0]})
    return {"frame": frame, "table": pa.table(columns)}


@task
def use_frame(tables):
    """A consumer's pandas and Arrow work on the frames, and what it may not do to them."""
    frame, table = tables["frame"], tables["table"]
    seen = {"group sums": frame.groupby("group")["x"].sum().to_dict(), "new column": float(frame.assign(
        y=frame["x"] * 2)["y"].sum()), "arrow sum": table.column("x").to_numpy().sum()}
    try:
        frame.loc[0, "x"] = -1.0  # allowed, as under Prefect; it stays this run's own
        write = "allowed"
    except ValueError as error:
        write = str(error)
    return {**seen, "write": write}


def test_pandas_frames_and_arrow_tables_travel_by_segment_and_stay_usable():
    import pandas as pd  # the test extra installs pandas and pyarrow

    rows = 400_000  # 3.2 MB per column: each column is a buffer above the threshold

    def body():
        tables = make_frame.submit(rows)
        used = use_frame.submit(tables)
        used.wait()
        return tables, used, tables.state.data

    tables, used, stored = process_flow(body)()
    assert isinstance(stored, ResultRef) and stored.segment is not None and len(stored.data) < 16 * 1024
    expected = make_frame.fn(rows)
    pd.testing.assert_frame_equal(tables["frame"], expected["frame"])
    assert tables["table"].equals(expected["table"])
    x = np.arange(rows, dtype="float64")
    assert used["group sums"] == {g: float(x[np.arange(rows) % 3 == g].sum()) for g in range(3)}
    assert used["new column"] == float((x * 2).sum()) and used["arrow sum"] == x.sum()
    assert used["write"] == "allowed"
    pd.testing.assert_frame_equal(tables["frame"], expected["frame"])  # the consumer's write stayed its own


def produce_and_inspect(size):
    """A flow body: an array, a consumer's view of it, and how the array's result is stored."""
    array = make_array.submit(size)
    seen = inspect_array.submit(array)
    seen.wait()
    return array, seen, array.state.data


def test_large_results_travel_by_segment_and_arrive_writable_without_copy():
    array, seen, stored = process_flow(produce_and_inspect)(4 * MiB)
    assert isinstance(stored, ResultRef) and stored.segment is not None
    assert stored.segment.name.startswith(f"{PREFIX}{current_token()}-") and len(stored.segment.name) <= 30
    assert len(stored.data) < 1024, "only a small pickle travelled through the pipe"
    # Its consumer maps the segment (no copy), or, fused behind it in the same worker, takes the
    # producer's own array (no copy either, issue 22); either way it may write to it.
    assert seen["writeable"] is True and seen["sum"] == float(np.arange(4 * MiB).sum())
    array[0] = 1.0  # the caller's own page (copy-on-write), as under Prefect


@task
def center_in_place(image):
    image -= image.mean()  # in-place code that works under Prefect (issue 16)
    return float(np.abs(image).sum())


def test_in_place_writes_to_an_input_stay_private_to_that_run():
    def body():
        image = make_array.submit(2 * MiB)
        centered = center_in_place.submit(image)
        after = inspect_array.submit(image, wait_for=[centered])  # reads the segment after the write
        mine = image.result()
        mine[:] = -1.0  # the parent's writes are its own too
        later = inspect_array.submit(image)
        return centered, after, later

    centered, after, later = process_flow(body)()
    original = float(np.arange(2 * MiB).sum())
    assert centered == float(np.abs(np.arange(2 * MiB) - np.arange(2 * MiB).mean()).sum())
    assert after["sum"] == original and later["sum"] == original, "a run's or the caller's write leaked"


def test_small_results_stay_in_the_pipe():
    @process_flow
    def body():
        small = make_array.submit(100)
        small.wait()
        return [small.state.data]

    [stored] = body()
    assert isinstance(stored, ResultRef) and stored.segment is None


def test_parent_memory_stays_flat_while_a_big_array_fans_out():
    size = 400 * MiB // 8  # 400 MB of float64

    @task
    def big():
        return np.ones(size)

    @process_flow
    def body():
        array = big.submit()
        return [inspect_array.submit(array) for _ in range(3)]

    parent = psutil.Process()
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(parent.memory_info().rss)
            time.sleep(0.01)

    body()  # warm the pool so worker start-up does not count
    before = parent.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = body()
    finally:
        stop.set()
        sampler.join()
    assert [r["sum"] for r in results] == [float(size)] * 3
    growth = max(samples) - before
    assert growth < 60 * MiB, f"parent grew by {growth / MiB:.0f} MiB while 400 MB fanned out"


def test_a_long_chain_keeps_only_a_few_arrays_in_dev_shm(tmp_path):
    owner, counts = os.getpid(), tmp_path / "live-segments"

    @task
    def step(array, index, log_path):
        """Counts the parent's segments as this link starts: the task itself takes the sample."""
        live = [n for n in os.listdir(SHM_DIR) if n.startswith(f"{PREFIX}{owner}-")]
        with open(log_path, "a") as log:
            log.write(f"{len(live)}\n")
        out = array.copy()
        out[0] = index
        return out

    @process_flow
    def body():
        link = make_array.submit(8 * MiB // 8)
        for index in range(40):
            link = step.submit(link, index, str(counts))  # the previous future is dropped
        return link

    array = body()
    assert array[0] == 39 and array[1] == 1.0
    live = [int(line) for line in counts.read_text().split()]
    assert len(live) == 40 and max(live) <= 5, f"segments alive along the chain: {live}"


@task
def scribble(array, mark):
    """A task that writes into the array it was given, and says what it saw first."""
    # No task of this flow makes a large result: a segment this large is the parent's argument.
    parent_written = [name for name in os.listdir(SHM_DIR) if name.startswith(PREFIX)
                      and os.stat(os.path.join(SHM_DIR, name)).st_size >= array.nbytes]
    first, writeable = float(array[0]), array.flags.writeable
    array[0] = mark  # a private copy: neither the flow nor the other tasks see it
    return {"first": first, "writeable": writeable, "mine": float(array[0]), "rest": float(array[1:].sum()),
            "parent segments": parent_written}


def test_arrays_the_flow_passes_go_by_segment_and_each_task_gets_its_own_writable_copy():
    original = np.arange(MiB, dtype="float64")  # 8 MB
    rest = float(original[1:].sum())

    def body(array):
        mapped = scribble.map(unmapped(array), range(1, 7))
        first = scribble.submit(array, 100)
        first.wait()
        array[0] = 42.0  # changed after that run: the next run sees the change
        second = scribble.submit(array, 200)
        return mapped, first, second

    mapped, first, second = process_flow(body)(original.copy())
    for seen, mark in zip(mapped + [first, second], list(range(1, 7)) + [100, 200], strict=True):
        assert seen["writeable"] and seen["mine"] == mark and seen["rest"] == rest
        assert seen["parent segments"], "the array came through a segment the parent wrote, not the pipe"
    assert [seen["first"] for seen in mapped + [first]] == [0.0] * 7
    assert second["first"] == 42.0


def test_a_maps_shared_argument_is_written_once_and_unlinked_after_its_runs():
    writer = SegmentWriter(owner().token)
    shared_arguments = ArgumentSegments(writer)
    array, other = np.ones(MiB), np.zeros(MiB)

    def buffers(value):
        out_of_band = OutOfBand(MiB)
        pickle.dumps(value, protocol=5, buffer_callback=out_of_band)
        return out_of_band.buffers

    first_child = shared_arguments.share(1, 7, buffers(array))
    second_child = shared_arguments.share(2, 7, buffers(array))
    plain_run = shared_arguments.share(3, None, buffers(array))
    both = shared_arguments.share(4, None, buffers((array, other)))
    assert first_child == second_child and first_child[0][1] == array.nbytes
    assert plain_run != first_child and len(both) == 2
    names = {segment.name for shared in (first_child, plain_run, both) for segment, _ in shared}
    assert set(owned_segments(current_token())) == names
    shared_arguments.finished([3, 4])
    assert set(owned_segments(current_token())) == {first_child[0][0].name}
    shared_arguments.finished([1, 2])  # kept for the map's next children
    assert shared_arguments.share(5, 7, buffers(array)) == first_child
    shared_arguments.IDLE_BYTES = array.nbytes + (1 << 20)  # room for one idle buffer only
    other_map = shared_arguments.share(6, 8, buffers(other))
    shared_arguments.finished([5, 6])  # map 7's buffer went idle first: it goes
    assert set(owned_segments(current_token())) == {other_map[0][0].name}
    shared_arguments.close()
    assert not owned_segments(current_token())


def test_no_room_for_an_argument_sends_it_through_the_pipe_with_one_warning(monkeypatch, log_lines):
    real = psutil.disk_usage
    monkeypatch.setattr(psutil, "disk_usage",
                        lambda path: real(path)._replace(free=0) if str(path).startswith(SHM_DIR) else real(path))

    def body(array):
        return scribble.map(unmapped(array), range(3))

    before = set(os.listdir(SHM_DIR))  # an earlier test's kept segment may still be there
    seen = process_flow(body)(np.arange(MiB, dtype="float64"))
    made = {name for s in seen for name in s["parent segments"]} - before
    assert [s["mine"] for s in seen] == [0.0, 1.0, 2.0] and not made, f"the argument went to a segment: {made}"
    warnings = [line for line in log_lines if "/dev/shm has no room" in line]
    assert len(warnings) == 1 and "the arguments of task run 'scribble-" in warnings[0]


def test_no_room_in_dev_shm_falls_back_to_the_pipe_with_one_warning(log_lines):
    @process_flow
    def body():
        arrays = [make_array.submit(2 * MiB) for _ in range(3)]
        wait(arrays)
        return arrays, [a.state.data for a in arrays]

    runner_env = {"PROCFLOW_SHM_RESERVE_BYTES": str(1 << 60)}  # as if /dev/shm were full
    tight = flow(task_runner=ProcessPoolTaskRunner(max_workers=2, worker_env=runner_env))(body.fn)
    arrays, stored = values(tight())
    assert all(np.array_equal(a, np.arange(2 * MiB, dtype="float64")) for a in arrays)
    assert all(ref.segment is None and ref.fell_back for ref in stored)
    warnings = [line for line in log_lines if "/dev/shm has no room" in line]
    assert len(warnings) == 1 and "make_array-" in warnings[0]


def pretend_dev_shm_is_full():
    """A worker initializer: psutil reports /dev/shm full, as in a container with a tiny --shm-size."""
    real = psutil.disk_usage

    def disk_usage(path):
        usage = real(path)
        return usage._replace(free=0) if str(path).startswith(SHM_DIR) else usage

    psutil.disk_usage = disk_usage


def test_a_full_dev_shm_as_psutil_sees_it_sends_results_through_the_pipe(log_lines):
    full = ProcessPoolTaskRunner(max_workers=2, initializer=pretend_dev_shm_is_full)
    array, seen, stored = values(flow(task_runner=full)(produce_and_inspect)(2 * MiB))
    assert np.array_equal(array, np.arange(2 * MiB, dtype="float64"))
    assert seen["sum"] == float(np.arange(2 * MiB).sum())
    assert stored.segment is None and stored.fell_back
    assert sum("/dev/shm has no room" in line for line in log_lines) == 1


def test_returned_values_stay_valid_after_the_flow_frees_its_segments():
    @process_flow
    def body():
        return make_array.submit(2 * MiB)

    array = body()
    assert not owned_segments(current_token()), "segments are unlinked when the flow run ends"
    assert array[-1] == 2 * MiB - 1  # the mapping outlives the name


def test_no_resource_tracker_warnings_in_a_fresh_interpreter(tmp_path):
    script = tmp_path / "flow.py"
    done = run_script(script, "@flow\n"
                              "def main():\n    a = make.submit()\n    return [use.submit(a) for _ in range(4)]\n"
                              "if __name__ == '__main__':\n    print([state.result() for state in main()])\n")
    assert done.stdout.strip() == str([float(1 << 20)] * 4)
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr


def test_reused_segments_carry_each_rounds_own_values():
    """A pooled segment comes back, written through a worker's warm mapping: no stale data."""
    @task
    def make_full(value):
        return np.full(2 * MiB, value, dtype=np.float64)

    @task
    def consume(array):
        return float(array[0]), float(array.sum()), os.getpid()

    @process_flow
    def body():
        seen, names = [], []
        for value in range(8):
            array = make_full.submit(value)
            readings = [consume.submit(array) for _ in range(2)]
            seen.append([r.result() for r in readings])
            names.append(array.state.data.segment.name)
            del array, readings  # the segment goes back to the pool for the next round
        return seen, names

    seen, names = body()
    for value, readings in enumerate(seen):
        assert [(first, total) for first, total, _ in readings] == [(value, value * 2.0 * MiB)] * 2
    assert len(set(names)) < len(names), f"segments were not reused: {names}"


def test_workers_let_go_of_segments_the_parent_unlinked():
    """A worker's cached mapping must not keep a freed segment's memory in /dev/shm."""
    size = 64 * MiB

    @process_flow
    def body():
        array = make_array.submit(size // 8)
        return [inspect_array.submit(array) for _ in range(2)]

    body()  # start the workers
    baseline = shm_free_bytes()
    assert [r["sum"] for r in body()] == [float(np.arange(size // 8).sum())] * 2
    deadline = time.monotonic() + 10
    while shm_free_bytes() < baseline - 16 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)
    held = baseline - shm_free_bytes()
    assert held < 16 * MiB, f"{held / MiB:.0f} MiB of /dev/shm still held after the flow run ended"


def test_segments_a_worker_keeps_mapped_do_not_get_it_recycled_as_a_leak():
    """loky restarts a worker whose RSS grew 300 MB past its first task's, taking it for a
    leak; mapped segments count in RSS, so 400 MB of them must not trip it."""

    @task
    def pid_after(seconds, *_):
        time.sleep(seconds)
        return os.getpid()

    # a pool of its own (other settings), so that loky measures its reference size here
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1, worker_env={"PROCFLOW_TEST_POOL": "leak-check"}))
    def body():
        first = pid_after.submit(0)
        arrays = [make_array.submit(200 * MiB // 8, wait_for=[first]) for _ in range(2)]
        sums = [inspect_array.submit(array) for array in arrays]  # the worker maps both: 400 MB
        later = pid_after.submit(1.2, sums)  # loky checks memory at most once a second, after a task
        return [first, later] + [pid_after.submit(0, later) for _ in range(2)]  # two: not fused behind it

    pids = values(body())
    assert len(set(pids)) == 1, f"the worker was replaced: {pids}"


def _segment(tag: str, payload: bytes) -> Segment:
    name = f"{PREFIX}{owner().token}-{tag * 13}"
    fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with open(fd, "wb") as file:
        file.write(payload)
    return Segment(name, len(payload))


def _kept(mappings, segment):
    fd = os.open(os.path.join(SHM_DIR, segment.name), os.O_RDWR)
    try:
        mappings.keep(segment, fd)
    finally:
        os.close(fd)


def test_warm_mappings_follow_the_file_behind_a_name():
    mappings = WarmMappings()
    segment = _segment("a", b"1" * MiB)
    try:
        _kept(mappings, segment)
        mapping = mappings.writable(segment, MiB)
        assert mapping is not None and mapping[:3] == b"111" and len(mappings) == 1
        with open(os.path.join(SHM_DIR, segment.name), "r+b") as file:
            file.write(b"22")  # rewritten in place (pwrite into a reused segment): the mapping sees it
        assert mapping[:3] == b"221"
        unlink(segment.name)
        _segment("a", b"3" * MiB)  # same name, another file: never written through the old mapping
        assert mappings.writable(segment, MiB) is None and len(mappings) == 1
        mappings.sweep()
        assert len(mappings) == 0
    finally:
        unlink(segment.name)


def test_a_segment_lent_back_to_the_worker_that_wrote_it_is_written_through_its_mapping(monkeypatch):
    """Issue 22: pwrite copies at ~3 GB/s here, a kept mapping at memory speed; the next
    result in a reused segment is its own, whole."""
    import procflow.shm as shm

    monkeypatch.setattr(shm, "_warm", WarmMappings())
    writer = SegmentWriter(owner().token)
    first = writer.store(np.full(MiB, 1.0), MiB, [])
    try:
        def no_pwrite(*_):
            raise AssertionError("went through pwrite")

        monkeypatch.setattr(shm.os, "pwrite", no_pwrite)
        second = writer.store(np.arange(MiB, dtype=np.float64), MiB, [first.segment])
        assert second.segment == first.segment, "the lent segment was used"
        assert np.array_equal(second.load(), np.arange(MiB, dtype=np.float64))
    finally:
        unlink(first.segment.name)


def test_warm_mappings_write_only_into_pages_that_exist():
    """Writing through a mapping into unallocated tmpfs pages would be SIGBUS on a full /dev/shm."""
    mappings = WarmMappings()
    segment = _segment("b", b"x" * MiB)
    try:
        assert mappings.writable(segment, MiB) is None, "not mapped by this process yet"
        _kept(mappings, segment)
        assert mappings.writable(segment, MiB) is not None
        os.truncate(os.path.join(SHM_DIR, segment.name), 4 * MiB)  # the tail is a hole
        assert mappings.writable(segment, 2 * MiB) is None
    finally:
        unlink(segment.name)


def test_a_state_keeps_its_result_after_its_future_is_dropped_and_a_released_result_refuses_to_load():
    """Both once read whatever result the recycled segment held next, silently."""
    @process_flow
    def body():
        state = make_full_array.submit(1.0, return_state=True)  # the future is dropped at once
        dropped = make_full_array.submit(3.0)
        dropped.wait()
        record = dropped.task_run  # a run record does not hold the result
        del dropped
        gc.collect()
        later = [make_full_array.submit(value) for value in (2.0, 4.0)]
        for future in later:
            future.wait()
        try:
            record.state.result()
            released = "read"
        except SharedResultGone as error:
            released = str(error)
        return float(state.result().sum()), [future.result()[0] for future in later], released

    held, later, released = body()
    assert held == 1.0 * MiB and later == [2.0, 4.0]
    assert "was already released" in released


def test_a_runner_can_keep_freed_segments_for_the_next_flow_run():
    keeping = ProcessPoolTaskRunner(max_workers=2, keep_segments_between_runs=True)

    @flow(task_runner=keeping)
    def body(value):
        array = make_full_array.submit(value)
        total = consume_sum.submit(array)
        total.wait()
        return total.result(), array.state.data.segment.name  # the array's future is dropped here

    try:
        first_total, first_name = body(1)
        kept = owned_segments(current_token())
        assert kept == [first_name], "the freed segment stays, for the next flow run"
        second_total, second_name = body(2)
        assert (first_total, second_total) == (1.0 * MiB, 2.0 * MiB)
        assert second_name == first_name, "the next flow run wrote into the kept segment"
    finally:
        ProcessPoolTaskRunner.release_segments()
    assert not owned_segments(current_token())


def test_kept_segments_go_once_no_flow_run_used_them_for_the_idle_time():
    """SPEC §3: a warm pool is released after it idles; a flow run meanwhile calls that off."""
    keeping = ProcessPoolTaskRunner(max_workers=2, keep_segments_between_runs=3)

    @flow(task_runner=keeping)
    def body(value):
        array = make_full_array.submit(value)
        total = consume_sum.submit(array)
        return total.result(), array.state.data.segment.name

    try:
        _, first_name = body(1)
        time.sleep(2)
        _, second_name = body(2)  # the first run's idle release (due 1 s from now) is called off
        second_end = time.monotonic()
        assert second_name == first_name
        time.sleep(1.5)
        assert owned_segments(current_token()) == [first_name], "released while a flow run had just used it"
        while owned_segments(current_token()):
            assert time.monotonic() - second_end < 20, "kept segments outlived their idle time"
            time.sleep(0.1)
    finally:
        ProcessPoolTaskRunner.release_segments()


def test_the_pool_of_freed_segments_is_bounded_by_a_share_of_dev_shm():
    stats = os.statvfs(SHM_DIR)
    assert SegmentPool().max_bytes <= min(2 << 30, stats.f_blocks * stats.f_frsize // 4)


def test_a_segment_given_back_to_a_pool_no_flow_run_uses_is_unlinked_not_kept():
    """A batch that reports after its flow run ended (abandoned at Ctrl-C) gives its lent
    segments back: a pool nobody uses, with no idle release pending, must not keep them."""
    pool = SegmentPool()
    writer = SegmentWriter(owner().token)
    pool.open()
    kept, late = writer.prepare([MiB, MiB])
    pool.give_back(kept)  # a flow run uses the pool: kept for reuse
    assert pool.lend(MiB) == kept
    pool.give_back(kept)
    pool.close(None)  # the last flow run out empties it
    assert kept.name not in owned_segments(current_token())
    pool.give_back(late)
    assert late.name not in owned_segments(current_token()), "a closed pool kept a segment"
    assert pool.lend(MiB) is None


def test_kept_segments_go_when_the_process_exits(tmp_path):
    script = tmp_path / "kept.py"
    done = run_script(script, "from procflow.ownership import current_token, owned_segments\n"
                              "from procflow.task_runners import ProcessPoolTaskRunner\n"
                              "keeping = ProcessPoolTaskRunner(max_workers=2, keep_segments_between_runs=True)\n"
                              "@flow(task_runner=keeping)\n"
                              "def main():\n    return use.submit(make.submit())\n"
                              "if __name__ == '__main__':\n"
                              "    print(main().result(), current_token(), len(owned_segments(current_token())))\n")
    total, token, kept = done.stdout.split()
    assert float(total) == float(1 << 20) and int(kept) == 1
    assert not owned_segments(token), "kept segments are unlinked at exit"


@task
def make_full_array(value):
    return np.full(MiB, value, dtype=np.float64)


@task
def consume_sum(array):
    return float(array.sum())


def run_script(script, flow_code: str) -> subprocess.CompletedProcess:
    """Run a script in a fresh interpreter: two array tasks (`make`, `use`), then `flow_code`."""
    script.write_text(
        "import os\n"
        "import numpy as np\n"
        "from procflow import flow, task\n"
        "@task\n"
        "def make():\n    return np.ones(1 << 20)\n"
        "@task\n"
        "def use(a):\n    return float(a.sum())\n" + flow_code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_a_segment_prepared_for_an_expected_result_is_written_into():
    """The worker allocates a new segment's pages while the task computes, then writes into it."""
    writer = SegmentWriter(owner().token)
    [prepared] = writer.prepare([8 * MiB])
    try:
        for thread in threading.enumerate():
            if thread.name == "procflow-prepare-segment":
                thread.join()
        stat = os.stat(os.path.join(SHM_DIR, prepared.name))
        assert stat.st_size == prepared.size and stat.st_blocks * 512 >= 8 * MiB, "pages allocated"
        lent = [prepared]
        ref = writer.store(np.arange(MiB, dtype=np.float64), MiB, lent)
        assert ref.segment == prepared and not lent
        assert np.array_equal(ref.load(), np.arange(MiB, dtype=np.float64))
    finally:
        unlink(prepared.name)


@task
def big_or_small(big):
    if big == "fail":
        raise ValueError("no array this time")
    return np.ones(2 * MiB) if big else 1


def test_segments_prepared_for_results_that_never_come_are_unlinked():
    """Once a task has made a large result, its next runs get segments prepared in advance."""
    @process_flow
    def body(kind):
        return big_or_small.submit(kind).result(raise_on_failure=False)

    assert float(body(True).sum()) == 2.0 * MiB  # the runner learns the size
    assert body(False) == 1
    assert isinstance(body("fail"), ValueError)
    assert not owned_segments(current_token()), "the unused prepared segments were unlinked"


BYTES_ARGUMENT_SCRIPT = """
import os, resource, sys
import numpy as np
from procflow import flow, task

@task
def describe(value):
    if type(value) is list:  # in a list argument
        return "list-of-" + describe.fn(value[1])[0], 0, b"", None
    kind = type(value).__name__
    data = value.tobytes() if kind == "memoryview" else bytes(value)
    return kind, len(data), data[:4], getattr(value, "shape", None)

@flow
def pass_it(kind: str):
    data = b"abcd" + os.urandom(256 << 20)
    if kind == "bytearray":
        data = bytearray(data)
    elif kind == "memoryview":
        data = memoryview(np.frombuffer(data, dtype=np.uint8)[:256 << 20].reshape(1024, -1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    seen = describe.submit(data).result(), describe.submit([1, data]).result()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - before
    print(seen[0][0], seen[0][1], seen[0][2], seen[0][3], seen[1][0], grown)

pass_it(sys.argv[1])
"""


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_large_bytes_like_arguments_go_by_segment_not_through_the_parents_memory(tmp_path, kind):
    """Issue 19: a 1 GB bytes argument cost 3.1 GB of parent memory and 11 s (pickled in
    band, then copied again into the message); it now goes the arrays' road."""
    script = tmp_path / "bytes_argument.py"
    script.write_text(BYTES_ARGUMENT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen_kind, size, head, shape, list_kind, grown = done.stdout.split()[-6:] if kind != "memoryview" \
        else done.stdout.replace(", ", ",").split()[-6:]
    assert seen_kind == kind and list_kind == f"list-of-{kind}"
    assert int(size) == (256 << 20) + 4 * (kind != "memoryview")
    if kind == "memoryview":
        assert shape == f"(1024,{256 << 10})"
    else:
        assert head == "b'abcd'"
    assert int(grown) < 64 << 20, f"the parent grew by {int(grown) >> 20} MB passing 256 MB"


@task
def make_bytes(size):
    return b"z" * size


def test_a_large_bytes_result_travels_by_segment():
    def body():
        state = make_bytes.submit(8 * MiB)
        state.wait()
        return state.state.data, state.result()

    stored, value = ValueFlow(flow(task_runner=ProcessPoolTaskRunner(max_workers=1))(body))()
    assert isinstance(stored, ResultRef) and stored.segment is not None and len(stored.data) < 1024
    assert value == b"z" * (8 * MiB)


@task
def scribble_in_place(array):
    before = float(array[0])
    array[:] = -1.0  # in place, as some user code does
    return {"pid": os.getpid(), "owndata": array.flags.owndata, "before": before}


@task
def nap(seconds):
    time.sleep(seconds)


@task
def wait_for_file(path):
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


@task
def make_array_here(n):
    return os.getpid(), np.arange(n, dtype="float64")


@task
def second_of(pair):
    return pair[1]


def test_a_follower_fused_behind_a_large_result_takes_it_in_place_and_the_stored_copy_stays_intact(tmp_path):
    """Issue 22: a sole follower rides behind its producer in the same worker and takes the
    array as made (no read back from the segment); what it writes stays its own."""
    def body():
        opened = tmp_path / f"opened-{time.monotonic_ns()}"
        gate = wait_for_file.submit(str(opened))  # ends once the whole chain exists
        nap.submit(0, wait_for=[gate])  # a second dependent: nothing rides behind the gate itself
        made = make_array_here.submit(2 * MiB, wait_for=[gate])
        array = second_of.submit(made)
        seen = scribble_in_place.submit(array)
        opened.touch()
        return made.result()[0], seen.result(), array.result()

    for _ in range(3):  # the fusion happens when the runner has room to spare: every time here
        producer_pid, seen, array = process_flow(body)()
        assert seen["before"] == 0.0 and seen["pid"] == producer_pid
        assert seen["owndata"] is True, "it took the producer's own array, not a mapping of the segment"
        assert float(array[0]) == 0.0 and float(array[-1]) == 2 * MiB - 1, "the stored result is unchanged"
