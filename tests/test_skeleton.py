"""The argument skeleton (`resolve.skeleton`, `skeleton.fill`): one walk makes every upstream
result a slot; runners fill the slots. No engine, no runner: futures of hand-made records."""

from __future__ import annotations

import dataclasses
import pickle

from procflow import allow_failure, quote, unmapped
from procflow.task_future import TaskFuture, Waiter
from procflow.records import TaskRun
from procflow.resolve import skeleton
from procflow.runners.arguments import pickle_arguments
from procflow.skeleton import Input, Slot, fill
from procflow.states import Completed, Failed


def future(run_id: int, value=None, failed: bool = False) -> TaskFuture:
    state = Failed(ValueError(f"run {run_id} failed")) if failed else Completed(value)
    return TaskFuture(TaskRun(run_id, f"up-{run_id}", "up", "flow", state=state), Waiter())


@dataclasses.dataclass
class Pair:
    left: object
    right: object


def test_every_upstream_at_any_depth_becomes_a_slot_in_argument_order():
    a, b, c, d = future(1, 10), future(2, 20), future(3, 30), future(4, 40)
    args, kwargs, found = skeleton((a, [b, {"k": c}]), {"pair": Pair(d.state, 5)})
    assert args == (Slot(0), [Slot(1), {"k": Slot(2)}])
    assert kwargs["pair"] == Pair(Slot(3), 5)  # a state read from a future stands for it
    assert [(f.task_run.id, allowed) for f, allowed in found] == [(1, False), (2, False), (3, False), (4, False)]


def test_annotations_are_taken_off_and_allow_failure_is_recorded_on_its_slot():
    a, b = future(1, 1), future(2, failed=True)
    args, kwargs, found = skeleton((unmapped(a), allow_failure([b])), {"raw": quote([b])})
    assert args == (Slot(0), [Slot(1)])
    assert kwargs["raw"] == [b]  # quoted: passed as it is, its future not resolved
    assert [allowed for _, allowed in found] == [False, True]


def test_arguments_without_upstreams_are_returned_as_they_are_not_copied():
    data = [list(range(1000)), {"x": bytearray(b"ab")}]
    args, kwargs, found = skeleton((data,), {"n": range(3)})
    assert args[0] is data and kwargs["n"] == range(3) and found == []


def test_a_self_referencing_argument_stays_self_referencing_through_skeleton_and_fill():
    a = future(1, "value")
    loop: list = [a]
    loop.append(loop)
    args, _, found = skeleton((loop,), {})
    built = args[0]
    assert built[0] == Slot(0) and built[1] is built
    filled = fill(args, [slot.value() for slot in (Input(f.task_run.id, f.state, al) for f, al in found)])
    assert filled[0][0] == "value" and filled[0][1] is filled[0]


def test_fill_gives_values_and_an_allowed_failure_its_exception():
    ok, bad = future(1, 3), future(2, failed=True)
    args, kwargs, found = skeleton(([ok, allow_failure(bad)],), {})
    inputs = [Input(f.task_run.id, f.task_run.state, allowed) for f, allowed in found]
    filled = fill(args, [slot.value() for slot in inputs])
    assert filled[0][0] == 3
    assert isinstance(filled[0][1], ValueError) and str(filled[0][1]) == "run 2 failed"


def test_the_process_runner_pickles_slots_as_their_values_at_the_top_level_and_deeper():
    a, b = future(1, {"deep": 1}), future(2, [1, 2])
    for arguments in (((a, bytearray(b"x"), range(2)), {"b": b}), (([a, (b,)],), {})):
        args, kwargs, found = skeleton(*arguments)
        inputs = tuple(Input(f.task_run.id, f.task_run.state, allowed) for f, allowed in found)
        loaded = pickle.loads(pickle_arguments(args, kwargs, inputs))
        assert loaded == (fill(args, [s.value() for s in inputs]), fill(kwargs, [s.value() for s in inputs]))
