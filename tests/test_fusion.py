"""Fusion beyond single links (issue 22): a map's per-item chain and a diamond such as
`features(smooth, edges(smooth))` ride in one message to one worker, which hands the large
values made ahead of a run to it as they are. Failures, retries and crashes inside such a
message end every run as they would unfused (the thread runner is the reference).
"""

from __future__ import annotations

import itertools
import os
import time

import numpy as np
import pytest
from conftest import ValueFlow
from test_shm import wait_for_file

from procflow import flow, last_flow_run, task
from procflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

MiB = 1 << 20
ITEMS = 4


def on(runner):
    def wrap(fn):
        return ValueFlow(flow(task_runner=runner(max_workers=2))(fn))
    return wrap


@task
def make(seed, fail=False):
    if fail and seed == 1:
        raise ValueError(f"no image {seed}")
    return np.full(MiB // 8, float(seed))  # 1 MiB: it goes to shared memory


@task
def smooth(image):
    return image + 0.5


@task
def edges(smoothed, crash_marker=None):
    if crash_marker is not None and not os.path.exists(crash_marker):
        open(crash_marker, "w").close()
        os._exit(3)  # the worker dies in the middle of the fused message
    smoothed *= 2.0  # in place, as some user code does: its first taker may
    return smoothed


@task
def features(smoothed, edge_map):
    """What it was handed, and where it ran; then it scribbles on both, as in-place code does."""
    seen = {"pid": os.getpid(), "owndata": (smoothed.flags.owndata, edge_map.flags.owndata),
            "values": (float(smoothed[0]), float(edge_map[-1]))}
    smoothed[:] = -1.0
    edge_map[:] = -1.0
    return seen


def pipeline(gate_dir, fail=False, crash_marker=None):
    """The image pipeline's shape: make -> smooth -> {edges, features(smooth, edges)} per item.
    Every root waits for a gate that opens once the whole graph is submitted, so every chain
    exists when its first run is dispatched."""
    opened = os.path.join(gate_dir, f"opened-{time.monotonic_ns()}")
    gate = wait_for_file.submit(opened)
    images = make.map(range(ITEMS), fail=fail, wait_for=[gate])
    smoothed = smooth.map(images)
    edge_maps = edges.map(smoothed, crash_marker=crash_marker)
    feats = features.map(smoothed, edge_maps)
    open(opened, "w").close()
    return images, smoothed, edge_maps, feats


def test_each_items_diamond_runs_in_its_makers_worker_handing_each_array_over_once(tmp_path):
    """`edges` takes `smooth`'s array as made and doubles it in place; `features` then gets the
    stored copy of `smooth` (a mapping), unchanged, and `edges`' array as made."""
    @on(ProcessPoolTaskRunner)
    def images_flow():
        images, smoothed, edge_maps, feats = pipeline(str(tmp_path))
        return [f.result() for f in feats], [s.result() for s in smoothed], [e.result() for e in edge_maps]

    for _ in range(3):
        seen, smoothed, edge_maps = images_flow()
        by_name = {run.name: run for run in last_flow_run().task_runs}
        for item in range(ITEMS):
            workers = {by_name[f"{name}-{item}"].worker for name in ("make", "smooth", "edges", "features")}
            assert workers == {seen[item]["pid"]}, f"item {item} ran on one worker, its maker's: {workers}"
            assert seen[item]["owndata"] == (False, True), "smooth's stored copy, and edges' array as made"
            assert seen[item]["values"] == (item + 0.5, 2 * item + 1.0)
            assert float(smoothed[item][0]) == item + 0.5 and float(edge_maps[item][-1]) == 2 * item + 1.0, \
                "the stored results are unchanged by what the fused run wrote"


def outcome_of_failing_pipeline(runner, gate_dir):
    @on(runner)
    def failing():
        return pipeline(gate_dir, fail=True)

    failing(return_state=True)
    return {run.name: (run.state.name, run.state.message) for run in last_flow_run().task_runs
            if not run.name.startswith("wait_for_file")}


def test_a_failure_inside_a_fused_diamond_blocks_the_rest_as_on_the_thread_runner(tmp_path):
    processes = outcome_of_failing_pipeline(ProcessPoolTaskRunner, str(tmp_path))
    assert processes == outcome_of_failing_pipeline(ThreadPoolTaskRunner, str(tmp_path))
    assert processes["make-1"][0] == "Failed"
    assert processes["features-1"] == ("NotReady", "Upstream task run 'smooth-1' did not reach a 'COMPLETED' state."), \
        "the first upstream in argument order that did not complete"
    assert {name: state for name, (state, _) in processes.items() if not name.endswith("-1")} == {
        f"{name}-{item}": "Completed" for name in ("make", "smooth", "edges", "features") for item in (0, 2, 3)}


@pytest.mark.parametrize("repeat", range(2))
def test_a_worker_dying_inside_a_fused_diamond_runs_each_lost_run_again_in_order(tmp_path, repeat):
    marker = str(tmp_path / f"crashed-{repeat}")
    retried = edges.with_options(retries=1)

    @on(ProcessPoolTaskRunner)
    def crashing():
        opened = str(tmp_path / f"opened-{repeat}")
        gate = wait_for_file.submit(opened)
        image = make.submit(3, wait_for=[gate])
        smoothed = smooth.submit(image)
        edge_map = retried.submit(smoothed, crash_marker=marker)
        seen = features.submit(smoothed, edge_map)
        open(opened, "w").close()
        return seen.result()

    seen = crashing()
    assert os.path.exists(marker), "the first attempt of edges killed its worker"
    assert seen["values"] == (3.5, 7.0)
    runs = {run.name: run for run in last_flow_run().task_runs}
    assert all(run.state.is_completed() for run in runs.values())
    order = [runs[name] for name in ("make-0", "smooth-0", "edges-0", "features-0")]
    for before, after in itertools.pairwise(order):
        assert after.start_time >= before.end_time, f"{after.name} ran after {before.name} ended"


@task
def slow_then_time(seconds):
    time.sleep(seconds)
    return time.time()


def note_running(path):
    def hook(task_, task_run, state):
        with open(path, "a") as file:
            file.write(f"{time.time()!r}\n")
    return hook


def test_an_on_running_hook_runs_once_its_upstream_completed_so_its_run_is_not_fused(tmp_path):
    """Prefect runs `on_running` as the run starts: after its upstream completed."""
    path = str(tmp_path / "running")
    follower = slow_then_time.with_options(on_running=[note_running(path)])

    @on(ProcessPoolTaskRunner)
    def hooked():
        upstream = slow_then_time.submit(0.3)
        after = follower.submit(0, wait_for=[upstream])  # submitted while its upstream runs
        return upstream.result(), after.result()

    for _ in range(2):
        open(path, "w").close()
        upstream_ended, _ = hooked()
        with open(path) as file:
            (hook_ran,) = [float(line) for line in file]
        assert hook_ran >= upstream_ended, "the hook ran after its upstream ended"
