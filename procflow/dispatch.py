"""Ready runs become calls for the runner: deadlines armed, caches consulted, chains fused.

The engine's thread calls `Dispatcher.dispatch()` after each round of events. A ready
run becomes a `Call` (its function, its argument skeleton and the inputs that fill its
slots, its timeout); the runs that could only run after it, one after another, ride
behind it in the same message (linear fusion, as Dask does, over diamonds and a map's
per-item chains too), and come back `DEFERRED` when the run before them did not complete.
"""

from __future__ import annotations

import time
from typing import Callable

from . import caching
from .entries import Entry
from .lifecycle import Effect, Lifecycle, RunHooks
from .run_names import resolved_task_run_name
from .messages import RunIdentity
from .runners.base import Call, Session
from .states import Crashed, Failed, Running, State
from .task_transactions import keyed

RUNNING = Running()
MAX_FUSED = 64  # followers sent behind one run in a message


class Dispatcher:
    def __init__(self, lifecycle: Lifecycle, runner: Session, apply: Callable[[list[Effect]], None],
                 publish: Callable[[], None]) -> None:
        self.lifecycle = lifecycle
        self.scheduler = lifecycle.scheduler
        self.entries = lifecycle.entries
        self.runner = runner
        self.apply = apply  # the engine's: carry out effects (hooks, the end of a run not submitted)
        self.publish = publish  # the engine's: make this round's states visible (a cached run's, to its followers)

    def finish(self, entry: Entry, state: State) -> None:
        """End a run that will not be submitted."""
        self.apply(self.lifecycle.finish(entry, state))

    def dispatch(self) -> None:
        """Pop ready runs as far as the runner has room, and submit them as calls."""
        scheduler, runner = self.scheduler, self.runner
        while scheduler.ready_count:
            room = runner.capacity()
            if room <= 0:
                return
            calls = []
            now = time.time()
            popped = scheduler.pop_ready(room)
            served = False
            for run_id in popped:
                entry = self.entries[run_id]
                try:
                    call = self._prepare(entry, now)
                except Exception as error:  # noqa: BLE001 - fail this run, never lose it (a hang)
                    self.finish(entry, Failed(error, message=f"procflow could not dispatch this run: "
                                                              f"{type(error).__name__}: {error}"))
                    continue
                if call is None:
                    served = True
                else:
                    calls.append(call)
                    if runner.fuses and call.timeout is None and call.persist is None:
                        calls.extend(self._fused_behind(run_id, now))
            if served:  # its followers, ready now, are popped next: they pass its published result on
                self.publish()
            if calls:
                try:
                    runner.submit(calls)
                except Exception as error:  # noqa: BLE001 - the pool is gone (interpreter exit): never lose runs
                    message = f"procflow could not submit this run: {type(error).__name__}: {error}"
                    for call in calls:
                        self.finish(self.entries[call.run_id], Crashed(message))

    def _fused_behind(self, run_id: int, now: float) -> list[Call]:
        """The runs that can only run after `run_id`, one after another, to ride behind it in
        its message (`Scheduler.chain_behind`): a chain, a map's per-item chain, a diamond.

        Like Dask's linear fusion, widened to diamonds: a link costs no round trip through
        the parent. The worker runs a follower only when the run before it completed, and
        hands it the large values made ahead of it as they are (`worker.batch_value`).
        """
        if not self.scheduler.waited_on(run_id):  # most runs of a fan-out: nothing to follow
            return []
        entries = self.entries

        def fusable(run: int) -> bool:
            entry = entries.get(run)
            return entry is not None and _fusable(entry)

        def leads(run: int) -> bool:  # its dependents wait for its completion hooks
            return not entries[run].task.options.on_completion

        followers: list[Call] = []
        previous = run_id
        for follower in self.scheduler.chain_behind(run_id, fusable, leads, MAX_FUSED):
            self.scheduler.claim(follower)
            call = self._prepare(entries[follower], now)
            assert call is not None  # fusable runs have no cache key
            call.after = previous
            followers.append(call)
            previous = follower
        return followers

    def _prepare(self, entry: Entry, now: float) -> Call | None:
        run, task, chosen = entry.run, entry.task, entry.task.options  # (its fields: no descriptor per read)
        if caching.persists(chosen.caching, entry.tracker.persist_default) and self._cached(entry):
            return None
        if entry.name_pending:  # its upstreams are in: the name template can use their results
            run.name = resolved_task_run_name(task, *entry.arguments())
            entry.name_pending = False
        run.attempts += 1
        run.state = RUNNING  # not terminal: nobody waits for it, so no lock and no wake-up
        if chosen.on_running:
            self.apply([RunHooks(entry, tuple(chosen.on_running), RUNNING, ends=False)])
        timeout = chosen.timeout_seconds
        if timeout is not None:
            self.lifecycle.timers.push(now + timeout + self.runner.interrupt_grace, "deadline", run.id, run.attempts)
        log_prints = chosen.log_prints if chosen.log_prints is not None else entry.tracker.log_prints
        who = RunIdentity(run.id, run.name, task.name, run.flow_run_name, run.attempts,
                          entry.tracker.flow_run.run_count, tuple(sorted(run.tags)),
                          keyed(entry.transaction, entry.cache_plan), run.flow_run_id)
        persist = entry.cache_plan.persist if entry.cache_plan is not None else None
        if persist is not None and entry.transaction is not None and entry.transaction.defers():
            persist = None  # stored when the transaction commits, from the flow's process (`Keep`)
        return Call(who, task.fn, entry.args, entry.kwargs, entry.inputs(), timeout, log_prints,
                    map_group=run.map_group, persist=persist)

    def _cached(self, entry: Entry) -> bool:
        """A completed run with its cache key is there: this run ends with its result, not run."""
        task, run, tracker = entry.task, entry.run, entry.tracker
        parameters = task.parameters_of(*entry.arguments())
        found = entry.cache_plan = caching.plan(task, run, tracker.flow_run, tracker.persist_default, tracker.storage,
                                                parameters)
        hit = caching.lookup(found, tracker.cache, run) if found is not None else None
        if hit is None:
            return False
        run.start_time = run.end_time = time.time()
        self.finish(entry, hit)
        return True


def _fusable(entry: Entry) -> bool:
    """No deadline to keep, no cache to consult, no name to render from its upstreams' results,
    no upstream whose failure it must receive, no `on_running` hook (it runs when the run starts,
    as in Prefect: after its upstreams completed, not when the message leaves)."""
    chosen = entry.task.options
    return chosen.timeout_seconds is None and not caching.persists(chosen.caching, entry.tracker.persist_default) \
        and not entry.name_pending and not chosen.on_running and not any(allowed for _, allowed in entry.upstream)
