"""Grouping runs into messages for the process pool: a pure function."""

from procflow.messages import RunIdentity
from procflow.runners.base import Call
from procflow.runners.batching import MAX_BATCH, batch_size, group_calls


def call(run_id, after=0, timeout=None):
    return Call(RunIdentity(run_id, f"t-{run_id}", "t"), len, (), {}, (), timeout, False, after)


def ids(groups):
    return [[c.run_id for c in group] for group in groups]


def test_runs_spread_over_the_messages_the_pool_has_room_for():
    assert ids(group_calls([call(i) for i in range(1, 9)], 4)) == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert ids(group_calls([call(1), call(2)], 4)) == [[1], [2]]


def test_fused_chains_stay_whole_and_timed_runs_go_alone():
    calls = [call(1), call(2, after=1), call(3, after=2), call(4), call(5, timeout=1.0), call(6)]
    assert ids(group_calls(calls, 2)) == [[1, 2, 3], [4, 6], [5]]


def test_batch_size_follows_measured_run_time():
    assert batch_size(None) == 1
    assert batch_size(1.0) == 1
    assert batch_size(0.0001) == 500
    assert batch_size(0.010) == 5, "10 ms runs: five to a message, ~50 ms of work"
    assert batch_size(1e-9) == MAX_BATCH


def test_run_times_smooth_what_batch_size_sizes_messages_by():
    from procflow.runners.batching import RunTimes

    times = RunTimes()
    assert batch_size(times.seconds) == 1, "not measured yet: one run per message"
    times.add(0.001)
    assert times.seconds == 0.001 and batch_size(times.seconds) == 50
    times.add(0.011)  # one slow run moves the estimate a fifth of the way
    assert abs(times.seconds - 0.003) < 1e-12 and batch_size(times.seconds) == 16
