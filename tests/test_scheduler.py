"""The scheduler as a pure state machine: integers in, transitions out."""

import random

import pytest

from procflow.scheduler import Scheduler, SchedulerState


def test_runs_become_ready_when_all_upstreams_finish():
    s = Scheduler()
    s.add(1)
    s.add(2)
    s.add(3, [(1, True), (2, True)])
    assert sorted(s.pop_ready(10)) == [1, 2]
    assert s.finish(1, True) == []
    assert s.pop_ready(10) == []
    s.finish(2, True)
    assert s.pop_ready(10) == [3]
    s.finish(3, True)
    assert s.idle
    assert s.state == SchedulerState(completed={1: True, 2: True, 3: True})


def test_failure_blocks_dependents_transitively_unless_allowed():
    s = Scheduler()
    s.add(1)
    s.add(2, [(1, True)])
    s.add(3, [(2, True)])
    s.add(4, [(1, False)])  # allow_failure edge
    s.pop_ready(1)
    blocked = s.finish(1, False)
    assert blocked == [(2, 1), (3, 2)]
    assert s.pop_ready(10) == [4]


def test_the_blocking_upstream_is_the_first_in_order_that_failed_once_those_before_it_finished():
    s = Scheduler()
    for run in (1, 2, 3):
        s.add(run)
    s.add(4, [(1, True), (9, False), (2, True), (3, True)])  # 9: an allow_failure edge, never the cause
    s.add(9)
    s.pop_ready(10)
    assert s.finish(3, False) == [], "1 and 2 may still fail: 4 waits"
    assert s.chain_behind(1, ALL, ALL, 64) == [], "a doomed run is never fused behind its upstream"
    assert s.finish(2, False) == []
    assert s.finish(1, True) == [(4, 2)], "2 is the first in order that failed"
    assert s.pop_ready(10) == []
    s.add(5, [(3, True), (1, True)])
    assert s.outcome(5) is False, "an upstream already failed first in order: blocked at once"
    s.add(6, [(9, True), (2, True)])
    assert s.finish(9, True) == [(6, 2)]
    assert not s.state.order and not s.state.doomed


def test_upstream_already_failed_blocks_at_add():
    s = Scheduler()
    s.add(1)
    s.pop_ready(1)
    s.finish(1, False)
    assert s.add(2, [(1, True)]) == [(2, 1)]
    assert s.add(3, [(1, False)]) == []
    assert s.pop_ready(5) == [3]


def test_depth_first_prefers_downstream_of_finished_runs():
    s = Scheduler(depth_first=True)
    for run in range(1, 6):
        s.add(run)
    s.add(10, [(1, True)])
    assert s.pop_ready(1) == [1]
    s.finish(1, True)
    assert s.pop_ready(1) == [10]


def test_submission_order_for_sequential():
    s = Scheduler(depth_first=False)
    for run in (1, 2, 3):
        s.add(run)
    s.add(4, [(1, True)])
    s.pop_ready(1)
    s.finish(1, True)
    assert s.pop_ready(10) == [2, 3, 4]


def test_shuffled_finish_order_releases_every_run_exactly_once():
    rng = random.Random(7)
    s = Scheduler()
    edges = {run: [u for u in range(1, run) if rng.random() < 0.1] for run in range(1, 300)}
    for run in reversed(sorted(edges)):  # added in reverse: upstreams may come later
        s.add(run, [(u, True) for u in edges[run]])
    released, finished = [], set()
    while not s.idle:
        ready = s.pop_ready(1000)
        rng.shuffle(ready)
        for run in ready:
            assert all(u in finished for u in edges[run])
            released.append(run)
            finished.add(run)
            s.finish(run, True)
    assert sorted(released) == sorted(edges)


def test_a_run_put_back_is_ready_again_at_the_front_and_cancel_pending():
    s = Scheduler()
    s.add(1)
    s.add(2, [(1, True)])
    s.add(3)
    assert s.pop_ready(1) == [1]
    assert s.put_back(1, []) == []
    assert s.pop_ready(1) == [1], "before 3, which was ready first"
    assert sorted(s.cancel_pending()) == [2, 3]
    s.finish(1, True)
    assert s.idle


def ALL(run):
    return True


def chain_graph():
    """1 -> 2 -> 3 (a chain); 4 -> {5, 6} (a fork); 1 -> 7 by an allow_failure edge."""
    s = Scheduler()
    s.add(1)
    s.add(2, [(1, True)])
    s.add(3, [(2, True)])
    s.add(4)
    s.add(5, [(4, True)])
    s.add(6, [(4, True)])
    s.add(7, [(1, False)])
    return s


def test_a_chain_is_fused_but_not_a_fork_nor_a_run_with_another_dependent():
    s = chain_graph()
    assert s.chain_behind(1, ALL, ALL, 64) == [], "1 has two dependents (7 waits outside the message)"
    assert s.chain_behind(4, ALL, ALL, 64) == [], "5 and 6 could run side by side"
    assert s.chain_behind(2, ALL, ALL, 64) == [3]
    assert s.chain_behind(2, ALL, ALL, 0) == []
    assert s.chain_behind(2, lambda run: run != 3, ALL, 64) == []
    assert s.chain_behind(2, ALL, lambda run: run != 2, 64) == [], "2's dependents wait for its hooks"


def test_a_diamond_and_a_maps_per_item_chain_are_fused_whole():
    s = Scheduler()
    s.add(1)  # make
    s.add(2, [(1, True)])  # denoise(make)
    s.add(3, [(2, True)])  # edges(denoise)
    s.add(4, [(2, True), (3, True)])  # features(denoise, edges)
    s.add(6)  # another image's
    s.add(5, [(4, True), (6, True)])  # summary(features of both): outside, behind the last
    assert s.pop_ready(1) == [1]
    assert s.chain_behind(1, ALL, ALL, 64) == [2, 3, 4]
    assert s.chain_behind(1, ALL, ALL, 2) == [2], "3 would leave 2's dependent 4 outside the message"
    assert s.chain_behind(1, lambda run: run != 4, ALL, 64) == [2], "the same, 4 not fusable"


def test_a_follower_with_an_upstream_outside_the_chain_is_not_fused():
    s = Scheduler()
    s.add(1)
    s.add(2)
    s.add(3, [(1, True), (2, True)])
    assert s.pop_ready(2) == [1, 2]
    assert s.chain_behind(1, ALL, ALL, 64) == []
    s.finish(2, True)
    assert s.chain_behind(1, ALL, ALL, 64) == [3], "2 finished: 3 waits on 1 alone"


def test_claimed_runs_put_back_wait_again_for_the_upstreams_still_to_run():
    s = Scheduler()
    s.add(1)
    s.add(2, [(1, True)])
    s.add(3, [(1, True), (2, True)])
    assert s.pop_ready(1) == [1]
    for run in s.chain_behind(1, ALL, ALL, 64):
        s.claim(run)
    assert s.state.running == {1, 2, 3} and not s.state.remaining
    # The message was lost: all three go back; 3 waits for both again, not for 2 alone.
    assert s.put_back(1, []) == []
    assert s.put_back(2, [(1, True)]) == []
    assert s.put_back(3, [(1, True), (2, True)]) == []
    assert s.state.remaining == {2: 1, 3: 2}
    assert s.pop_ready(10) == [1]
    s.finish(1, True)
    assert s.pop_ready(10) == [2], "3 still waits for 2"
    s.finish(2, True)
    assert s.pop_ready(10) == [3]


def test_a_claimed_run_put_back_behind_a_failed_upstream_is_blocked_by_the_first_in_order():
    s = Scheduler()
    s.add(1)
    s.add(2, [(1, True)])
    s.add(3, [(1, True), (2, True)])
    s.add(4, [(3, True)])
    assert s.pop_ready(1) == [1]
    assert s.chain_behind(1, ALL, ALL, 2) == [2, 3]
    for run in (2, 3):
        s.claim(run)
    assert s.finish(1, False) == []  # the batch: 1 failed, 2 and 3 deferred
    assert s.put_back(2, [(1, True)]) == [(2, 1)]
    assert s.put_back(3, [(1, True), (2, True)]) == [(3, 1), (4, 3)], "1 is first in order; 4 blocked by 3"
    assert s.idle


def test_cancel_ends_only_the_given_runs_not_started_and_blocks_their_dependents():
    s = Scheduler()
    s.add(1)  # another flow run's, running
    s.add(2)  # ours, running: it finishes on its own
    s.pop_ready(2)
    s.add(3)  # ours, ready
    s.add(4, [(2, True)])  # ours, waiting
    s.add(5, [(3, True)])  # another flow's run waiting on ours
    s.add(6)  # another flow's, ready
    cancelled, blocked = s.cancel([2, 3, 4])
    assert sorted(cancelled) == [3, 4] and blocked == [(5, 3)]
    assert s.pop_ready(10) == [6]
    s.finish(2, True)
    assert s.pop_ready(10) == [], "4 was cancelled, it does not become ready"
    assert s.outcome(3) is False and s.outcome(4) is False and s.outcome(1) is None


def test_finishing_a_run_that_is_not_running_is_an_error():
    scheduler = Scheduler()
    with pytest.raises(ValueError, match="run 7 is not running here.*unknown or not started"):
        scheduler.finish(7, True)
    scheduler.add(1)
    with pytest.raises(ValueError, match="run 1 is not running"):
        scheduler.finish(1, True)  # ready, not started
    assert scheduler.pop_ready(1) == [1]
    scheduler.finish(1, True)
    with pytest.raises(ValueError, match="it finished already"):
        scheduler.finish(1, False)
    assert scheduler.outcome(1) is True


def test_cancelling_unknown_runs_is_an_error_and_known_ones_in_any_place_cancel():
    scheduler = Scheduler()
    scheduler.add(1)
    scheduler.add(2, [(1, True)])
    scheduler.add(3)
    assert scheduler.pop_ready(1) == [1]
    scheduler.set_aside(1)  # waiting out a retry delay
    with pytest.raises(ValueError, match=r"does not know: \[99\]"):
        scheduler.cancel([3, 99])
    assert scheduler.outcome(3) is None  # nothing was cancelled by the refused call
    cancelled, blocked = scheduler.cancel([1, 3])
    assert sorted(cancelled) == [1, 3] and blocked == [(2, 1)]
