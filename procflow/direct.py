"""A direct call of a task inside a flow (`total(x)`): the run happens here, in the caller.

As in Prefect: upstreams are waited for (one that did not complete leaves the run
`NotReady`), futures in the arguments become their results, the cache is consulted and the
result persisted (`caching.py`), and retries, `timeout_seconds` and hooks apply as for a
submitted run. Outside a flow the function is just called, unless the call needs a run: a
state to return, or a result to cache (then it is a run of the detached context).

An `async def` task called directly gives a coroutine (Prefect 3, in a sync flow too);
awaited, the run happens in the awaiting event loop: waiting for upstreams happens in a
thread, retry delays are `asyncio.sleep`, the timeout is an `asyncio` deadline, so
`asyncio.gather(t(1), t(2))` runs both at once.

The steps of a direct run (`context_of`, `new_run`, `inputs`, `attempt`, `attempt_end`,
`after`) are public: a generator task's run is made of them (`task_generators.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Protocol

from . import caching, hooks
from .context import FlowContext, standalone_context
from .current import TaskRunInfo, current_flow, current_task_run
from .execution import TIMED_OUT, Executed, RunTimedOut, aexecute, execute
from .attempts import Finish, PutBack, Retry, RetryPolicy, decide
from .task_future import TaskFuture
from .records import TaskRun
from .resolve import Found, collect, edges, not_ready, substitute, wait_all, wait_futures
from .run_names import resolved_task_run_name, task_run_name
from .runlog import log_retry, task_emitter
from .interrupts import deadline
from .states import Running, State
from .task_transactions import RunTransaction, ending, keyed, made_here
from .shapes import Args, Kwargs



class DirectTask(RetryPolicy, Protocol):
    """What a direct call reads of its task (a `tasks.Task`)."""

    name: str
    fn: Callable[..., Any]
    log_prints: bool | None
    caching: caching.TaskCaching
    state_hooks: dict[str, list[Callable[..., Any]]]
    task_run_name: Any

    def parameters_of(self, args: Args, kwargs: Kwargs) -> dict[str, Any]: ...

    def _check(self, args: Args, kwargs: Kwargs) -> None: ...


def call(task: DirectTask, args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Any:
    context = context_of(task)
    if context is None:
        return task.fn(*args, **kwargs)
    transaction = made_here(task)
    run, upstream, needs, provisional = new_run(task, context, args, kwargs, wait_for)
    wait_all(upstream)
    state, args, kwargs, found = _before(task, context, run, upstream, args, kwargs, needs, provisional)
    if state is None:
        state = _attempts(task, context, run, args, kwargs, keyed(transaction, found))
    return after(task, context, run, state, return_state, transaction, _persisting(context, run, found, state))


async def acall(task: DirectTask, args: Args, kwargs: Kwargs, wait_for: Any, return_state: bool) -> Any:
    import asyncio  # an event loop runs this: loaded already (procflow itself does not load it)

    context = context_of(task)
    if context is None:
        return await task.fn(*args, **kwargs)
    transaction = made_here(task)
    run, upstream, needs, provisional = new_run(task, context, args, kwargs, wait_for)
    if not all(future.done() for future, _ in upstream):  # waiting must not block the loop
        await asyncio.to_thread(wait_all, upstream)
    state, args, kwargs, found = _before(task, context, run, upstream, args, kwargs, needs, provisional)
    if state is None:
        state = await _async_attempts(task, context, run, args, kwargs, keyed(transaction, found))
    return after(task, context, run, state, return_state, transaction, _persisting(context, run, found, state))


def new_run(task: DirectTask, context: FlowContext, args: Args, kwargs: Kwargs,
            wait_for: Any) -> tuple[TaskRun, Found, bool, bool]:
    """A direct call's run record, made and announced: (run, its upstreams, whether its
    arguments hold futures, whether its name waits for their results)."""
    task._check(args, kwargs)
    found: Found = []
    needs = collect(args, found) | collect(kwargs, found)
    waits = wait_futures(wait_for)
    name, provisional = task_run_name(task, context, args, kwargs, needs)
    run = context.new_record(task, name, edges(found, waits), None)
    context.observer.runs_created(context.flow_run, [run], False)
    return run, found + waits, needs, provisional


def context_of(task: DirectTask) -> FlowContext | None:
    """The flow's context; outside any flow, a standalone run (as in Prefect: retries, hooks and
    the cache apply, `TaskRunContext` is set). Inside a task running in a worker process the
    function is just called (None): its process has no flow to record the run in."""
    context: FlowContext | None = current_flow.get()
    if context is None:
        return None if current_task_run.get() is not None else standalone_context()
    return context


def inputs(task: DirectTask, run: TaskRun, upstream: Found, args: Args, kwargs: Kwargs, needs: bool,
           provisional_name: bool) -> tuple[State | None, Args, Kwargs]:
    """Upstreams are done: (`NotReady` if one did not complete, the run's inputs); a name that
    waited for the results is made from them."""
    blocked = not_ready(upstream)
    if blocked is not None:
        return blocked, args, kwargs
    if provisional_name:
        run.name = resolved_task_run_name(task, args, kwargs)
    if needs:
        args, kwargs = substitute(args), substitute(kwargs)
    return None, args, kwargs


def _before(task: DirectTask, context: FlowContext, run: TaskRun, upstream: Found, args: Args, kwargs: Kwargs,
            needs: bool, provisional_name: bool) -> tuple[State | None, Args, Kwargs, caching.Plan | None]:
    """Upstreams are done: (the state if the run ends before it runs, its inputs, its cache plan)."""
    blocked, args, kwargs = inputs(task, run, upstream, args, kwargs, needs, provisional_name)
    if blocked is not None:
        return blocked, args, kwargs, None
    found = None
    if caching.persists(task.caching, context.tracker.persist_default):  # as a submitted run's (`dispatch.py`)
        tracker = context.tracker
        found = caching.plan(task, run, context.flow_run, tracker.persist_default, tracker.storage,
                             task.parameters_of(args, kwargs))
        hit = caching.lookup(found, tracker.cache, run) if found is not None else None
        if hit is not None:
            run.start_time = run.end_time = time.time()
            return hit, args, kwargs, found
    return None, args, kwargs, found


def _persisting(context: FlowContext, run: TaskRun, found: caching.Plan | None,
                state: State) -> Callable[[], None] | None:
    """What stores a run that persists from here (it ran in the flow's process), if it does."""
    return caching.stored_at_commit(found, context.tracker.cache, run, state, lambda: state.data)


def after(task: DirectTask, context: FlowContext, run: TaskRun, final: State, return_state: bool,
          transaction: RunTransaction | None, persist: Callable[[], None] | None) -> Any:
    # With `return_state`, the state returned is held by a future of its run: passed to a task,
    # it stands for that upstream. The hooks get that same object, as in Prefect, and a flow
    # that returns it returns it (the future's `.state` is it).
    state = final
    if return_state:
        holder: TaskFuture[Any] = TaskFuture(run, context.engine.waiter)
        state = holder.given = dataclasses.replace(final, holder=holder)
    end_transaction = ending(transaction, task, final, run.name, persist)
    if end_transaction is not None:
        end_transaction()  # the result is stored when the transaction commits (now, with none open above)
    elif persist is not None:
        persist()
    due = hooks.hooks_for(task.state_hooks, state)
    if due:
        hooks.call_hooks(due, task, run, state, task_emitter(run.name))
    run.state = final
    context.observer.runs_finished([run])
    if return_state:
        return state
    return state._result()


def _attempts(task: DirectTask, context: FlowContext, run: TaskRun, args: Args, kwargs: Kwargs,
              transaction: RunTransaction | None) -> State:
    """Run here, again after each failure while retries are left."""
    while True:
        info, log_prints, emit = attempt(task, context, run, args, kwargs, transaction)
        limit = task.timeout_seconds
        with contextlib.nullcontext() if limit is None else deadline(limit, RunTimedOut, TIMED_OUT):
            outcome = execute(info, log_prints, emit)
        end = attempt_end(task, run, outcome)
        if isinstance(end, Finish):
            return end.state
        time.sleep(end.delay)


async def _async_attempts(task: DirectTask, context: FlowContext, run: TaskRun, args: Args,
                          kwargs: Kwargs, transaction: RunTransaction | None) -> State:
    import asyncio  # an event loop runs this: loaded already (procflow itself does not load it)

    while True:
        info, log_prints, emit = attempt(task, context, run, args, kwargs, transaction)
        end = attempt_end(task, run, await aexecute(info, log_prints, emit, task.timeout_seconds))
        if isinstance(end, Finish):
            return end.state
        await asyncio.sleep(end.delay)


def attempt(task: DirectTask, context: FlowContext, run: TaskRun, args: Args, kwargs: Kwargs,
            transaction: RunTransaction | None) -> tuple[TaskRunInfo, bool, Any]:
    """A new attempt begins: its `on_running` hooks have run; (what runs, log_prints, emit)."""
    run.attempts += 1
    emit = task_emitter(run.name)
    if task.state_hooks["on_running"]:
        hooks.call_hooks(task.state_hooks["on_running"], task, run, Running(), emit)
    log_prints = task.log_prints if task.log_prints is not None else context.tracker.log_prints
    flow_run_name = None if context.standalone else run.flow_run_name  # outside a flow: no flow run, as in Prefect
    info = TaskRunInfo(run.id, run.name, task.name, flow_run_name, task.fn, args, kwargs,
                       run.attempts, context.flow_run.run_count, tuple(sorted(run.tags)), transaction,
                       None if context.standalone else run.flow_run_id, time.time())
    return info, log_prints, emit


def attempt_end(task: DirectTask, run: TaskRun, outcome: Executed) -> Finish | Retry:
    """The attempt's final state, or a retry (logged here) after its delay (`attempts.decide`)."""
    status, value, error, run.start_time, run.end_time = outcome
    run.worker = "flow"
    decision = decide(task, run, status, value, error)
    assert not isinstance(decision, PutBack)  # a direct call always runs
    if isinstance(decision, Retry):
        log_retry(run.name, decision.reason)
    return decision
