"""Random task graphs, the same flow on every runner: the same states, results and messages.

Each seed builds a flow of submitted, mapped and directly called runs wired by data
arguments (bare, nested in lists and dicts), `wait_for` and `allow_failure`, with some
runs failing and some failing once then retried. The sequential runner, which runs in
submission order, is the reference; the others interleave runs as their pools please.
It found that a run blocked by several failed upstreams named whichever failed first.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from procflow import allow_failure, flow, task, unmapped
from procflow.task_runners import ProcessPoolTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

SEEDS = range(25)


def total(value):
    if isinstance(value, BaseException):
        return 1000
    if isinstance(value, (list, tuple)):
        return sum(total(item) for item in value)
    if isinstance(value, dict):
        return sum(total(item) for item in value.values())
    return value


@task
def node(i, fails, marker, *inputs, extra=None):
    time.sleep((i * 7919 % 13) / 400)  # up to 30 ms: runs end out of submission order
    if marker is not None and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"first attempt of {i}")
    if fails:
        raise ValueError(f"boom {i}")
    return i + total(list(inputs)) + total(extra or {})


@task
def child(item, base, bad):
    if item == bad:
        raise KeyError(item)
    return total(item) + total(base)


def random_flow(seed, directory):
    rng = random.Random(seed)
    size = rng.randint(8, 20)

    def body():
        futures = []
        for i in range(size):
            args, waits, extra = [], [], {}
            for upstream in rng.sample(futures, k=min(len(futures), rng.randint(0, 3))):
                how = rng.choice(["data", "wait", "allowed", "nested", "keyword"])
                if how == "data":
                    args.append(upstream)
                elif how == "wait":
                    waits.append(upstream)
                elif how == "allowed":
                    args.append(allow_failure(upstream))
                elif how == "nested":
                    args.append([upstream, 1])
                else:
                    extra[f"k{i}-{len(extra)}"] = upstream
            fails = rng.random() < 0.15
            marker = os.path.join(directory, f"m{i}") if rng.random() < 0.15 else None
            runs = node.with_options(retries=1) if marker else node
            kind = rng.choice(["submit"] * 5 + ["map", "call"])
            if kind == "map":
                mapped = child.map([0, 1, 2], unmapped(args[0] if args else 0), rng.choice([None, 1]),
                                   wait_for=waits or None)
                futures.append(mapped[rng.randint(0, 2)])
            else:
                if kind == "call":
                    try:
                        runs(i, fails, marker, *args, extra=extra, wait_for=waits or None)
                    except Exception:  # noqa: BLE001 - its state is what the comparison reads
                        pass
                    marker = marker and marker + "-again"
                futures.append(runs.submit(i, fails, marker, *args, extra=extra, wait_for=waits or None))
        return None

    return body


def outcome(flow_run):
    rows = []
    for run in flow_run.task_runs:
        value = run.state.result(raise_on_failure=False)
        rows.append((run.name, run.state.name, run.state.message,
                     f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else value))
    return flow_run.state.message, rows


@pytest.mark.parametrize("seed", SEEDS)
def test_every_runner_ends_a_random_graph_as_the_sequential_runner_does(seed, tmp_path):
    results = {}
    for name, runner in (("sequential", SequentialTaskRunner()), ("thread", ThreadPoolTaskRunner(max_workers=4)),
                         ("process", ProcessPoolTaskRunner(max_workers=2))):
        directory = tmp_path / name
        directory.mkdir()
        graph = flow(task_runner=runner, name=f"random-{seed}")(random_flow(seed, str(directory)))
        graph(return_state=True)
        results[name] = outcome(graph.last_run)
    assert results["thread"] == results["sequential"]
    assert results["process"] == results["sequential"]
