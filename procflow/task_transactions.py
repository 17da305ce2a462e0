"""A task run's own transaction (Prefect 3.8: every task run has one), from where the run is
made to where its function runs, and back to the flow's process where it ends.

`RunTransaction` is made with the run, in the thread that submits or calls it, holding the
transaction open there (its parent). Where the function runs, `opened()` makes the run's
`Transaction` when the task first asks for it (`get_transaction()`), so a run that never
does costs nothing. A worker process receives a copy of the parent's values instead of the
parent itself (`__reduce__`), and sends back what the task set. When the run ends, `ending()`
gives what the hook threads do before the run's state hooks: a completed run stages its
task's commit and rollback hooks, and commits at once if no transaction is open above it;
a run that failed rolls back, and so does its parent, at once.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

from .runlog import RunLogger, task_emitter
from .states import State
from .transactions import BaseTransaction, CommitMode, IsolationLevel, Transaction, TransactionState, get_transaction

_NO_HOOKS: tuple[list[Any], list[Any]] = ([], [])


class RunTransaction:
    """A run's transaction: its parent, its key (the run's cache key), and once opened, itself."""

    __slots__ = ("parent", "key", "transaction", "values", "kept", "ends_here")

    def __init__(self, parent: BaseTransaction | None, key: str | None = None, ends_here: bool = False) -> None:
        self.parent = parent
        self.key = key
        # True where the function runs when the flow's process does not end this one: a
        # worker's copy, or one made for a run given none (`settle_here`)
        self.ends_here = ends_here
        self.transaction: Transaction | None = None
        self.values: dict[str, Any] | None = None  # what the task set, sent back by a worker
        self.kept: Any = None  # a result to store when the transaction commits, loaded when the run ended

    def defers(self) -> bool:
        """Whether the run's result is stored when a transaction above commits, not when it
        completes: one is open above it, and does not commit eagerly."""
        return self.parent is not None and self.parent.commit_mode is not CommitMode.EAGER

    def opened(self) -> Transaction:
        """The run's transaction, made on first use where the function runs."""
        if self.transaction is None:
            parent = self.parent
            made = Transaction(key=self.key, commit_mode=parent.commit_mode if parent else CommitMode.LAZY,
                               isolation_level=parent.isolation_level if parent else IsolationLevel.READ_COMMITTED,
                               state=TransactionState.ACTIVE)
            made._parent = parent
            self.transaction = made
        return self.transaction

    def __reduce__(self) -> tuple[Any, ...]:
        """To a worker process: the parent's values (those that pickle), not the parent."""
        return _received, (_values_above(self.parent), _mode(self.parent), self.key)


def _values_above(parent: BaseTransaction | None) -> dict[str, bytes]:
    """The values of the transactions open above a run, pickled, the nearest's winning; made
    once while they do not change (a map of 10 000 runs pickles them once, not 10 000 times)."""
    chain = []
    while parent is not None:
        chain.append(parent)
        parent = parent.get_parent()
    if not chain:
        return {}
    versions = tuple((id(transaction), transaction._version) for transaction in chain)
    copied = chain[0]._copied
    if copied is not None and copied[0] == versions:
        return copied[1]  # type: ignore[no-any-return]
    seen: dict[str, Any] = {}
    for transaction in reversed(chain):  # the nearest parent's value of a name wins
        seen.update(transaction._stored_values)
    values = _pickled_each(seen)
    chain[0]._copied = (versions, values)
    return values


def _pickled_each(values: dict[str, Any]) -> dict[str, bytes]:
    """Values pickled by name, each on its own: one that cannot be is left out (it is not there
    on the other side), rather than losing the message that carries them."""
    import cloudpickle  # what the task's arguments travel with (a lambda, a local class)

    pickled = {}
    for name, value in values.items():
        try:
            pickled[name] = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - see above
            continue
    return pickled


def _mode(parent: BaseTransaction | None) -> tuple[CommitMode, IsolationLevel] | None:
    if parent is None:
        return None
    return parent.commit_mode or CommitMode.LAZY, parent.isolation_level or IsolationLevel.READ_COMMITTED


def _received(values: dict[str, bytes], mode: tuple[CommitMode, IsolationLevel] | None,
              key: str | None) -> RunTransaction:
    parent = None
    if mode is not None:
        parent = Transaction(commit_mode=mode[0], isolation_level=mode[1], state=TransactionState.ACTIVE)
        parent._parent = None
        parent._stored_values = _loaded(values)
    return RunTransaction(parent, key, ends_here=True)


def _loaded(values: dict[str, bytes]) -> dict[str, Any]:
    """Values pickled by name, each loaded on its own: one this process cannot load (its class
    is not importable here) is left out, and the run still runs."""
    loaded = {}
    for name, data in values.items():
        try:
            loaded[name] = pickle.loads(data)
        except Exception:  # noqa: BLE001 - `get()` of it gives its default here
            continue
    return loaded


def keyed(run_transaction: RunTransaction | None, plan: Any) -> RunTransaction | None:
    """The run's transaction takes its cache key (`caching.Plan`), as Prefect's does."""
    if run_transaction is not None and plan is not None:
        run_transaction.key = plan.persist.key
    return run_transaction


def _quiet(action: Callable[[], None]) -> Callable[[BaseTransaction], None]:
    """procflow's own hook (storing the result, letting it go), without a log line."""
    def hook(_: BaseTransaction) -> None:
        action()

    hook.log_on_run = False  # type: ignore[attr-defined] # Prefect's mark for hooks it does not log
    return hook


def _joined_late(made: Transaction, parent: BaseTransaction | None) -> None:
    """A run still running when its transaction's block ended joins it as it ends: it commits if
    the transaction committed, and rolls back if it rolled back. (Prefect leaves such a run
    staged for ever: never stored, its hooks never called.)"""
    if parent is None or not made.is_staged():
        return
    if parent.is_committed():
        made.commit()
    elif parent.is_rolled_back():
        made.rollback()


def settle_here(run_transaction: RunTransaction, failed: bool) -> None:
    """Transactions the task opened itself, inside its own, commit when it completes (or roll
    back when it fails), where it ran, when the run's own transaction is not the engine's to
    end (nothing above sees it, or this is a worker's copy)."""
    made = run_transaction.transaction
    if made is None or not made.children:
        return
    for child in list(made.children):
        if failed:
            child.rollback()
        else:
            child.commit()


def sent_back(run_transaction: RunTransaction | None) -> dict[str, bytes] | None:
    """A worker's: what the task set in its transaction, for its hooks (None: nothing)."""
    made = run_transaction.transaction if run_transaction is not None else None
    if made is None or not made._stored_values:
        return None
    return _pickled_each(made._stored_values) or None


def received(run_transaction: RunTransaction | None, values: dict[str, bytes] | None) -> None:
    """The parent's: a worker's values, for the run's hooks."""
    if run_transaction is None or not values:
        return
    run_transaction.values = _loaded(values)


def made_here(task: Any) -> RunTransaction | None:
    """A new run's transaction, if anything can see it: a transaction is open here, or its task
    has commit or rollback hooks (else `get_transaction()` in the task makes one on its own)."""
    return makes_here(task)()


def makes_here(task: Any) -> Callable[[], RunTransaction | None]:
    """`made_here` for many runs made here at once (a map's): what is open is looked up once."""
    parent = get_transaction()
    if parent is None and not any(_hooks(task)):
        return _none
    return lambda: RunTransaction(parent)


def _none() -> None:
    return None


def _hooks(task: Any) -> tuple[list[Any], list[Any]]:
    hooks = getattr(task, "state_hooks", None)
    if not hooks:
        return _NO_HOOKS
    return hooks.get("on_commit", []), hooks.get("on_rollback", [])


def ending(run_transaction: RunTransaction | None, task: Any, state: State, run_name: str,
           persist: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """What ends the run's transaction (before its state hooks, on a hook thread for a submitted
    run); None: nothing to. A cached run's record was there: it begins committed, as in Prefect.
    `persist` stores the result when the transaction commits (a direct call's)."""
    if run_transaction is None:
        return None
    completed, cached = state.is_completed(), state.name == "Cached"

    def end() -> None:
        logger = RunLogger(task_emitter(run_name), run_name)
        try:
            _end(logger)
        except Exception:  # noqa: BLE001 - the run ends all the same, and its state hooks run
            logger.exception("Its transaction could not end")

    def _end(logger: RunLogger) -> None:
        made = run_transaction.opened()
        made.logger = logger
        if run_transaction.values:
            made._stored_values.update(run_transaction.values)
        if not completed:
            made.rollback()  # nothing staged: no hook of its own runs
            made.reset()  # its parent takes it, and rolls back
            return
        if cached:
            made.state = TransactionState.COMMITTED  # its record was there: nothing to commit
        else:
            on_commit, on_rollback = _hooks(task)
            stores, releases = [], []
            if persist is not None:
                def release() -> None:
                    run_transaction.kept = None  # the result it held for the commit

                def store() -> None:
                    try:
                        persist()
                    finally:
                        release()

                stores, releases = [_quiet(store)], [_quiet(release)]
            made.stage(None, on_rollback_hooks=[*releases, *on_rollback], on_commit_hooks=[*on_commit, *stores])
        made.end()
        _joined_late(made, run_transaction.parent)

    return end
