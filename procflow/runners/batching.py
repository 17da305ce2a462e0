"""How many runs go to a worker in one message, and which ones together.

Short runs travel several to a message, sized so one message holds about
`TARGET_BATCH_SECONDS` of work (learned from the runs so far); slow or not yet
measured runs go one to a message, so two workers share work evenly. A run and the
runs fused behind it stay in one message; a run with a timeout goes alone (its
deadline is its own).

Why 50 ms: a message costs the parent 0.3-1 ms of CPU whatever it holds (the engine,
and loky's two threads per worker waking for it), so at one 10 ms run per message a
parent spends ~6% of a core per worker and feeds fewer than ~20 such workers. At 50 ms
of work per message it spends a third to a quarter of that per run (maps of 2 and 10 ms
runs: 356-379 and 779-995 us of parent CPU per run before, 80-100 and 298-312 after).
The price is bounded by the same 50 ms: the runs of a message come back together, and a
run that turns out long holds the rest of its message (at most ~50 ms of work) behind it.
The processes runner's `QUEUE_BEHIND_SECONDS` is this same figure, so a full message
still has a second one queued behind it in the worker. (joblib's automatic batches aim
at 0.2-2 s.)
"""

from __future__ import annotations

from .base import Call

MAX_BATCH = 512
TARGET_BATCH_SECONDS = 0.05


class RunTimes:
    """The seconds a run takes on this runner, smoothed (0.8 the old, 0.2 the new): what
    `batch_size` sizes messages by. None until a run has come back."""

    def __init__(self) -> None:
        self.seconds: float | None = None

    def add(self, elapsed: float) -> None:
        self.seconds = elapsed if self.seconds is None else 0.8 * self.seconds + 0.2 * elapsed


def batch_size(seconds_per_run: float | None, max_tasks_per_worker: int | None = None) -> int:
    """Runs per message for runs that take `seconds_per_run` (None: not measured yet), never
    more than a worker may run in its life."""
    if seconds_per_run is None:
        return 1
    return max(1, min(MAX_BATCH, max_tasks_per_worker or MAX_BATCH,
                      int(TARGET_BATCH_SECONDS / max(seconds_per_run, 1e-7))))


def group_calls(calls: list[Call], messages: int) -> list[list[Call]]:
    """`calls` in at most about `messages` groups, fused chains kept whole, timed runs alone."""
    chains: list[list[Call]] = []
    for call in calls:
        if call.after and chains:
            chains[-1].append(call)
        else:
            chains.append([call])
    timed = [chain for chain in chains if chain[0].timeout is not None]
    untimed = [chain for chain in chains if chain[0].timeout is None]
    size = -(-sum(map(len, untimed)) // max(1, messages)) if untimed else 1
    groups: list[list[Call]] = []
    for chain in untimed:
        if groups and len(groups[-1]) + len(chain) <= size:
            groups[-1].extend(chain)
        else:
            groups.append(list(chain))
    return groups + timed
