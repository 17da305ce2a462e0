"""The dependency graph and the ready queue: a pure state machine.

No threads, no pool, no I/O: the engine feeds it events and acts on what it returns, and
tests drive it with plain integers. A run moves waiting -> ready -> running -> finished:

    add(run, upstreams)   counts the upstreams not finished yet; 0 means ready
    pop_ready(n)          ready -> running, best first
    finish(run, ok)       running -> finished; each dependent's count drops by one and
                          reaching 0 makes it ready; a failed upstream that the edge does
                          not allow (no `allow_failure`) blocks the dependent instead,
                          and that block spreads to the dependent's own dependents
    put_back(run, upstreams)  a run that did not run (lost with its worker, fused behind a
                          run that failed, a retry's time) waits again for what is unfinished
    set_aside(run)        running -> neither, until its retry delay has passed
    finished_elsewhere(run, ok)  a run of another flow run ended (a future passed in)
    chain_behind(run, ...)  the runs that can only run after `run`, one after another, waiting
                          on nothing else: `claim` sends them along in its message (fusion)

Readiness by counters and successor lists, as `graphlib.TopologicalSorter.done`, but runs
are added while others run. Order among ready runs is depth-first (runs made ready by a
finish go before roots, so long pipelines drain and memory stays bounded) or plain
submission order (the sequential runner).

Which failed upstream blocks a run follows Prefect, which resolves a run's inputs one
after another (arguments, then wait_for): the first, in that order, that did not
complete, decided once every upstream before it has finished. So every runner names
the same upstream, however the runs interleave.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Iterable

# A blocked run and the upstream that did not complete.
Blocked = tuple[int, int]


@dataclass(slots=True)
class SchedulerState:
    remaining: dict[int, int] = field(default_factory=dict)  # waiting run -> unfinished upstreams
    dependents: dict[int, list[tuple[int, bool]]] = field(default_factory=dict)  # run -> (dependent, blocks)
    ready: list[tuple[int, int]] = field(default_factory=list)  # heap of (priority, run)
    running: set[int] = field(default_factory=set)
    completed: dict[int, bool] = field(default_factory=dict)  # finished run -> did it complete
    doomed: dict[int, int] = field(default_factory=dict)  # waiting run -> a blocking upstream that failed
    order: dict[int, list[int]] = field(default_factory=dict)  # run -> its blocking upstreams, in order (2+)
    aside: set[int] = field(default_factory=set)  # runs waiting out a retry delay


class Scheduler:
    def __init__(self, depth_first: bool = True) -> None:
        self.state = SchedulerState()
        self._depth_first = depth_first

    # -- events -------------------------------------------------------------------

    def add(self, run: int, upstreams: Iterable[tuple[int, bool]] = ()) -> list[Blocked]:
        """Register `run`; `upstreams` are (run id, its failure blocks this run) pairs.

        Upstreams must be runs this scheduler knows. Returns the runs blocked by an
        upstream that already finished without completing (`run` and nothing else).
        """
        return self._wait(run, upstreams, new=True)

    def pop_ready(self, limit: int) -> list[int]:
        """Up to `limit` ready runs, now running."""
        state = self.state
        runs: list[int] = []
        while state.ready and len(runs) < limit:
            runs.append(heapq.heappop(state.ready)[1])
        state.running.update(runs)
        return runs

    def finish(self, run: int, ok: bool) -> list[Blocked]:
        """`run` finished (completed when `ok`); returns the runs that became blocked."""
        state = self.state
        if run not in state.running:
            raise ValueError(f"run {run} is not running here: it cannot finish "
                             f"({'it finished already' if run in state.completed else 'unknown or not started'})")
        state.running.discard(run)
        state.completed[run] = ok
        return self._release(run, ok)

    def set_aside(self, run: int) -> None:
        """A failed run waits out its retry delay: no longer running, not ready yet."""
        self.state.running.discard(run)
        self.state.aside.add(run)

    def finished_elsewhere(self, run: int, ok: bool) -> list[Blocked]:
        """A run of another flow run (another scheduler's) finished: runs here may depend on it,
        added before or after; returns the runs its end blocks."""
        self.state.completed[run] = ok
        return self._release(run, ok)

    def outcome(self, run: int) -> bool | None:
        """True completed, False did not, None not finished."""
        return self.state.completed.get(run)

    def waited_on(self, run: int) -> bool:
        """Some run not finished yet waits for `run`."""
        return bool(self.state.dependents.get(run))

    def is_running(self, run: int) -> bool:
        return run in self.state.running

    def put_back(self, run: int, upstreams: Iterable[tuple[int, bool]]) -> list[Blocked]:
        """A run that did not run (running, claimed, or set aside) waits again, as `add` would
        make it, for `upstreams` (the pairs it was added with) that have not finished; ready
        now goes to the front. Returns the runs blocked (it and its dependents) when one that
        finished failed."""
        self.state.running.discard(run)
        self.state.aside.discard(run)
        return self._wait(run, upstreams, new=False)

    def chain_behind(self, run: int, fusable: Callable[[int], bool], leads: Callable[[int], bool],
                     limit: int) -> list[int]:
        """The runs that could only run after `run` and one after another anyway: each waits
        for the run just before it, and otherwise only for runs before it in the chain (a
        map's per-item chain, a diamond such as `f(a, g(a))`), so sending them in `run`'s
        message (`claim`) costs no parallelism and saves each a trip through the parent.

        A message reports when its last run ends, so a run with a dependent outside the chain
        is only ever its last. `fusable(r)`: `r` may ride in a message; `leads(r)`: runs may
        follow `r` in one (no hooks its dependents must wait for).
        """
        state = self.state
        chain, position = [run], {run: 0}
        inside: dict[int, int] = {}  # waiting run -> its unfinished upstreams in the chain
        current = run
        while len(chain) <= limit and leads(current):
            candidates = set()
            for dependent, blocks in state.dependents.get(current, ()):
                inside[dependent] = inside.get(dependent, 0) + 1
                if blocks and inside[dependent] == state.remaining.get(dependent) \
                        and dependent not in state.doomed:
                    candidates.add(dependent)
            if len(candidates) != 1:  # none, or branches that could run side by side
                break
            current = candidates.pop()
            if not fusable(current):
                break
            position[current] = len(chain)
            chain.append(current)
        # Longest prefix whose runs, but its last, have every live dependent inside it.
        length, reach = 1, 0  # reach: the furthest position a run so far needs inside
        for index, member in enumerate(chain[:-1]):
            for dependent, _ in state.dependents.get(member, ()):
                if dependent in state.remaining or dependent in position:  # (not one blocked already)
                    reach = max(reach, position.get(dependent, len(chain)))
            if reach >= len(chain):  # one waits outside: no longer prefix will do
                break
            if reach <= index + 1:
                length = index + 2
        return chain[1:length]

    def claim(self, run: int) -> None:
        """waiting -> running: it goes to the worker behind its upstream (`chain_behind`)."""
        del self.state.remaining[run]
        self.state.order.pop(run, None)
        self.state.running.add(run)

    def cancel_pending(self) -> list[int]:
        """Every run not started yet (waiting or ready) is finished as not completed."""
        state = self.state
        pending = list(state.remaining) + [run for _, run in state.ready]
        for run in pending:
            state.completed[run] = False
        state.remaining.clear()
        state.ready.clear()
        state.dependents.clear()
        state.doomed.clear()
        state.order.clear()
        return pending

    def cancel(self, runs: Iterable[int]) -> tuple[list[int], list[Blocked]]:
        """Those of `runs` not started yet (waiting, ready, or waiting out a retry delay) are
        finished as not completed; returns them, and the runs their ends block."""
        state = self.state
        runs = list(runs)
        ready = {run for _, run in state.ready}
        unknown = [run for run in runs if run not in state.running and run not in state.completed
                   and run not in state.remaining and run not in state.aside and run not in ready]
        if unknown:
            raise ValueError(f"cannot cancel runs this scheduler does not know: {unknown[:5]}")
        chosen = [run for run in runs if run not in state.running and run not in state.completed]
        if not chosen:
            return [], []
        for run in chosen:
            state.remaining.pop(run, None)
            state.aside.discard(run)
            state.doomed.pop(run, None)
            state.order.pop(run, None)
            state.completed[run] = False
        gone = set(chosen)
        state.ready = [item for item in state.ready if item[1] not in gone]
        heapq.heapify(state.ready)
        blocked: list[Blocked] = []
        for run in chosen:
            blocked += self._release(run, False)
        return chosen, blocked

    # -- queries ------------------------------------------------------------------

    @property
    def ready_count(self) -> int:
        return len(self.state.ready)

    @property
    def idle(self) -> bool:
        """Nothing waiting, ready or running."""
        state = self.state
        return not (state.remaining or state.ready or state.running)

    # -- internals ----------------------------------------------------------------

    def _wait(self, run: int, upstreams: Iterable[tuple[int, bool]], new: bool) -> list[Blocked]:
        """`run` waits for those of `upstreams` not finished yet: ready at once without any, or
        blocked (it, and the dependents it has) by the first in order that did not complete.
        A `new` run goes on its unfinished upstreams' lists; one put back is on them still
        (claiming a run leaves it there) and, ready, goes to the front of the queue."""
        state = self.state
        unfinished, failed, blocking = 0, None, []
        for upstream, blocks in upstreams:
            finished_ok = state.completed.get(upstream)
            if finished_ok is None:
                unfinished += 1
                if new:
                    state.dependents.setdefault(upstream, []).append((run, blocks))
            elif blocks and not finished_ok and failed is None:
                failed = upstream
            if blocks:
                blocking.append(upstream)
        if failed is None and not unfinished:
            heapq.heappush(state.ready, (self._priority(run, from_finish=False) if new else -1, run))
            return []
        state.remaining[run] = unfinished  # once blocked, the upstreams still to finish skip it
        if len(blocking) > 1:
            state.order[run] = blocking
        if failed is None:
            return []
        state.doomed[run] = failed
        cause = self._cause(run)
        return [] if cause is None else self._block(run, cause) + self._release(run, False)

    def _priority(self, run: int, from_finish: bool) -> int:
        if not self._depth_first:
            return run
        return 0 if from_finish else 1

    def _release(self, run: int, ok: bool) -> list[Blocked]:
        state = self.state
        blocked: list[Blocked] = []
        stack = [(run, ok)]
        while stack:
            upstream, upstream_ok = stack.pop()
            for dependent, blocks in state.dependents.pop(upstream, ()):
                if dependent not in state.remaining:
                    continue  # blocked earlier by another upstream
                state.remaining[dependent] -= 1
                if blocks and not upstream_ok:
                    state.doomed.setdefault(dependent, upstream)
                if dependent in state.doomed:
                    cause = self._cause(dependent)
                    if cause is not None:
                        blocked += self._block(dependent, cause)
                        stack.append((dependent, False))
                elif state.remaining[dependent] == 0:
                    del state.remaining[dependent]
                    state.order.pop(dependent, None)
                    heapq.heappush(state.ready, (self._priority(dependent, from_finish=True), dependent))
        return blocked

    def _cause(self, run: int) -> int | None:
        """A doomed run's first blocking upstream that did not complete, once every one before
        it has finished; None while one of those still may run."""
        state = self.state
        order = state.order.get(run)
        if order is None:  # one blocking upstream: it failed
            return state.doomed[run]
        for upstream in order:
            finished_ok = state.completed.get(upstream)
            if finished_ok is None:
                return None
            if not finished_ok:
                return upstream
        raise AssertionError(f"run {run} is doomed without a failed upstream")

    def _block(self, run: int, upstream: int) -> list[Blocked]:
        state = self.state
        del state.remaining[run]
        state.doomed.pop(run, None)
        state.order.pop(run, None)
        state.completed[run] = False
        return [(run, upstream)]
