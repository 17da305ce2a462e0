"""Prefect's transactions: `with transaction():` groups task runs so that they commit or roll
back together, and `on_commit` / `on_rollback` hooks run when they do.

As in Prefect 3.8 (`prefect.transactions`): every task run has a transaction of its own, a
child of the one open where the run was submitted or called. A run that completes stages its
result and its task's hooks; a run that fails rolls back, and so does the transaction it
belongs to, at once, calling the rollback hooks of what it staged, newest first. A
transaction with no parent commits when its block ends (`CommitMode.LAZY`, the default):
its children commit, then its own commit hooks run; `EAGER` commits at the end of its own
block, `OFF` rolls back unless committed by hand. `txn.set(name, value)` / `txn.get(name)`
keep values for the hooks; a child sees its parents' values, copied.

Where procflow runs it: every transaction and every hook lives in the flow's process. A task
run's own transaction is made where its function runs (a worker process too): there
`get_transaction()` gives it, with a copy of the values of the transactions open where it
was submitted, and what the task sets in it comes back with its result for its hooks
(`task_transactions.py`).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import enum
import inspect
import logging
import threading
from typing import Any, AsyncIterator, Callable, ClassVar, Iterator

from .exceptions import ConfigurationError

TransactionHook = Callable[["BaseTransaction"], Any]

_LOGGER = logging.getLogger("procflow.transactions")
_UNSET: Any = object()
_ENDING = threading.Lock()  # held only to claim a transaction's end, never while a hook runs


class IsolationLevel(str, enum.Enum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class CommitMode(str, enum.Enum):
    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class TransactionState(str, enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


class BaseTransaction:
    """What a transaction holds: its key and store, its children, its state, its hooks and values."""

    __var__: ClassVar[contextvars.ContextVar[BaseTransaction]] = contextvars.ContextVar("procflow_transaction")
    _FIELDS = ("store", "key", "children", "commit_mode", "isolation_level", "state", "on_commit_hooks",
               "on_rollback_hooks", "overwrite", "logger", "write_on_commit")

    def __init__(self, store: Any = None, key: str | None = None, children: list[Any] | None = None,
                 commit_mode: CommitMode | None = None,
                 isolation_level: IsolationLevel | None = IsolationLevel.READ_COMMITTED,
                 state: TransactionState = TransactionState.PENDING,
                 on_commit_hooks: list[TransactionHook] | None = None,
                 on_rollback_hooks: list[TransactionHook] | None = None, overwrite: bool = False,
                 logger: Any = None, write_on_commit: bool = True) -> None:
        self.store = store
        self.key = key
        self.children: list[Any] = list(children or [])
        self.commit_mode = commit_mode
        self.isolation_level = isolation_level
        self.state = TransactionState(state)
        self.on_commit_hooks: list[TransactionHook] = list(on_commit_hooks or [])
        self.on_rollback_hooks: list[TransactionHook] = list(on_rollback_hooks or [])
        self.overwrite = overwrite
        self.logger = logger if logger is not None else _LOGGER
        self.write_on_commit = write_on_commit
        self._stored_values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._holder_id: str | None = None
        self._token: contextvars.Token[BaseTransaction] | None = None
        self._parent: Any = _UNSET  # set by procflow for a task run's transaction (no context variable)
        self._ending = False  # a commit or rollback under way (`_claim`)

    @property
    def _holder(self) -> str:
        """Who holds this transaction's lock (SERIALIZABLE): made when first asked for."""
        if self._holder_id is None:
            import uuid

            self._holder_id = str(uuid.uuid4())
        return self._holder_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, state={self.state.name})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseTransaction):
            return False
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # type: ignore[assignment] # equal when their fields are, as Prefect's models

    # -- values ----------------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Keep a value in this transaction, for its hooks and its children."""
        self._stored_values[name] = value

    def get(self, name: str, default: Any = _UNSET) -> Any:
        """A copy of a value set here, else in a parent; `default`, or ValueError, if none has it."""
        if name in self._stored_values:
            return copy.deepcopy(self._stored_values[name])
        parent = self.get_parent()
        if parent is not None:
            return parent.get(name, default)
        if default is not _UNSET:
            return default
        raise ValueError(f"Could not retrieve value for unknown key: {name}")

    # -- state -----------------------------------------------------------------------------

    def is_committed(self) -> bool:
        return self.state == TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        return self.state == TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        return self.state == TransactionState.STAGED

    def is_pending(self) -> bool:
        return self.state == TransactionState.PENDING

    def is_active(self) -> bool:
        return self.state == TransactionState.ACTIVE

    @classmethod
    def get_active(cls) -> BaseTransaction | None:
        return _opened(cls.__var__.get(None))

    def get_parent(self) -> BaseTransaction | None:
        if self._parent is not _UNSET:
            return self._parent  # type: ignore[no-any-return]
        if self._token is not None:
            previous = self._token.old_value
            return None if previous is contextvars.Token.MISSING else _opened(previous)
        return self.get_active()

    def add_child(self, transaction: BaseTransaction) -> None:
        self.children.append(transaction)

    def rollback(self) -> Any:
        """Roll back (a `Transaction`'s returns whether it did; an `AsyncTransaction`'s is awaited)."""
        raise NotImplementedError

    def _claim(self) -> bool:
        """Begin to commit or roll back, unless that is done or under way: a task run's
        transaction can end on a hook thread while its parent commits in the flow's thread,
        and its hooks must run once."""
        with _ENDING:
            if self._ending or self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
                return False
            self._ending = True
            return True

    def _late_children(self) -> list[Any]:
        """Children that joined while this one committed: they commit too."""
        return [child for child in self.children if child.is_staged() or child.is_active()]

    def stage(self, value: Any, on_rollback_hooks: list[TransactionHook] | None = None,
              on_commit_hooks: list[TransactionHook] | None = None) -> None:
        """Hold a value (and hooks) to commit later; a committed transaction keeps what it has."""
        if self.state != TransactionState.COMMITTED:
            self._staged_value = value
            self.on_rollback_hooks += on_rollback_hooks or []
            self.on_commit_hooks += on_commit_hooks or []
            self.state = TransactionState.STAGED

    def prepare_transaction(self) -> None:
        """Entering: the commit mode and isolation level default to the parent's; the store must
        give the isolation level asked for."""
        if self._token is not None:
            raise RuntimeError("Context already entered. Context enter calls cannot be nested.")
        parent = get_transaction()
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent else CommitMode.LAZY
        level = self.isolation_level
        if level is None:
            level = (parent.isolation_level if parent else None) or IsolationLevel.READ_COMMITTED
            self.isolation_level = level
        if self.store is not None and self.key and not _supports(self.store, level):
            raise ConfigurationError(
                f"Isolation level {level.name} is not supported by provided configuration. "
                "Please ensure you've provided a lock file directory or lock manager when using the "
                "SERIALIZABLE isolation level.")
        self.state = TransactionState.ACTIVE

    def _begin(self) -> None:
        if self._serializable():
            self.logger.debug(f"Acquiring lock for transaction {self.key!r}")
            self.store.acquire_lock(self.key, holder=self._holder)
        if not self.overwrite and self.store is not None and self.key and self.store.exists(key=self.key):
            self.state = TransactionState.COMMITTED

    def _serializable(self) -> bool:
        return bool(self.store is not None and self.key and self.isolation_level == IsolationLevel.SERIALIZABLE)

    def _release(self) -> None:
        if self._serializable():
            self.logger.debug(f"Releasing lock for transaction {self.key!r}")
            self.store.release_lock(self.key, holder=self._holder)

    def _write_call(self) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        """How committing writes what was staged to the store: (its method, args, kwargs), if it does."""
        if self.store is None or not self.key or not self.write_on_commit:
            return None
        if hasattr(self._staged_value, "metadata") and hasattr(self.store, "persist_result_record"):
            return "persist_result_record", (self._staged_value,), {"holder": self._holder}
        return "write", (), {"key": self.key, "obj": self._staged_value, "holder": self._holder}

    def _leave(self) -> BaseTransaction | None:
        """Out of the context: the parent takes this transaction as a child; the parent, if it
        must roll back with it."""
        parent = self.get_parent()
        if parent is not None:
            parent.add_child(self)
        if self._token is not None:
            self.__var__.reset(self._token)
            self._token = None
        return parent if parent is not None and self.state == TransactionState.ROLLED_BACK else None

    def _hook_starts(self, hook: TransactionHook, kind: str) -> tuple[str, bool]:
        name = str(getattr(hook, "__name__", None) or getattr(getattr(hook, "func", None), "__name__", repr(hook)))
        logs = bool(getattr(hook, "log_on_run", True))
        if logs:
            self.logger.info(f"Running {kind} hook {name!r}")
        return name, logs

    def _hook_ended(self, name: str, logs: bool, kind: str, error: BaseException | None) -> None:
        if not logs:
            return
        if error is not None:
            self.logger.error(f"An error was encountered while running {kind} hook {name!r}")
        else:
            self.logger.info(f"{kind.capitalize()} hook {name!r} finished running successfully")


def _opened(active: Any) -> BaseTransaction | None:
    """The transaction a context holds: a task run's own is made when first asked for
    (`task_transactions.RunTransaction`)."""
    opened = getattr(active, "opened", None)
    return opened() if opened is not None else active  # type: ignore[no-any-return]


def _supports(store: Any, level: IsolationLevel) -> bool:
    check = getattr(store, "supports_isolation_level", None)
    return True if check is None else bool(check(level))


class Transaction(BaseTransaction):
    """A transaction used with `with`: commits or rolls back when its block ends."""

    def __enter__(self) -> Transaction:
        self.prepare_transaction()
        self._begin()
        self._token = self.__var__.set(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        if exc_info[0] is not None:
            self.rollback()
            self.reset()
            raise exc_info[1]
        self.end()

    def end(self) -> None:
        """The block ended well: commit now (EAGER); else the parent takes the children, or, with
        none, commit (LAZY) or roll back what nobody committed (OFF)."""
        if self.commit_mode == CommitMode.EAGER:
            self.commit()
        if self.get_parent() is None:
            if self.commit_mode == CommitMode.OFF:
                self.rollback()
            elif self.commit_mode == CommitMode.LAZY:
                self.commit()
        self.reset()

    def read(self) -> Any:
        if self.store is not None and self.key:
            return self.store.read(key=self.key, holder=self._holder)
        return None

    def begin(self) -> None:
        self._begin()

    def reset(self) -> None:
        """Leave the context: the parent takes this transaction as a child, and rolls back with it."""
        parent = self._leave()
        if parent is not None:
            result = parent.rollback()
            if inspect.isawaitable(result):
                _run_coroutine(result)

    def commit(self) -> bool:
        if not self._claim():
            self._release()
            return False
        try:
            for child in self.children:
                result = child.commit()
                if inspect.isawaitable(result):
                    _run_coroutine(result)
            for hook in self.on_commit_hooks:
                self.run_hook(hook, "commit")
            write = self._write_call()
            if write is not None:
                getattr(self.store, write[0])(*write[1], **write[2])
            self.state = TransactionState.COMMITTED
            self._ending = False
            for child in self._late_children():
                child.commit()
            self._release()
            return True
        except Exception:  # noqa: BLE001 - as Prefect: an error in a commit rolls it back, logged
            self.logger.exception(f"An error was encountered while committing transaction {self.key!r}")
            self._ending = False
            self.rollback()
            return False

    def run_hook(self, hook: TransactionHook, kind: str) -> None:
        name, logs = self._hook_starts(hook, kind)
        try:
            result = hook(self)
            if inspect.isawaitable(result):
                _run_coroutine(result)
        except Exception as error:
            self._hook_ended(name, logs, kind, error)
            raise
        self._hook_ended(name, logs, kind, None)

    def rollback(self) -> bool:
        if not self._claim():
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self.run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                result = child.rollback()
                if inspect.isawaitable(result):
                    _run_coroutine(result)
            return True
        except Exception:  # noqa: BLE001 - as Prefect: logged, and the rollback reports it did not happen
            self.logger.exception(f"An error was encountered while rolling back transaction {self.key!r}")
            return False
        finally:
            self._ending = False
            self._release()


class AsyncTransaction(BaseTransaction):
    """A transaction used with `async with`; its hooks may be `async def`."""

    async def __aenter__(self) -> AsyncTransaction:
        self.prepare_transaction()
        await self.begin()
        self._token = self.__var__.set(self)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        if exc_info[0] is not None:
            await self.rollback()
            await self.reset()
            raise exc_info[1]
        if self.commit_mode == CommitMode.EAGER:
            await self.commit()
        if self.get_parent() is None:
            if self.commit_mode == CommitMode.OFF:
                await self.rollback()
            elif self.commit_mode == CommitMode.LAZY:
                await self.commit()
        await self.reset()

    def __enter__(self) -> None:
        raise NotImplementedError("AsyncTransaction does not support the `with` statement. "
                                  "Use the `async with` statement instead.")

    def __exit__(self, *exc_info: Any) -> None:
        raise NotImplementedError("AsyncTransaction does not support the `with` statement. "
                                  "Use the `async with` statement instead.")

    async def begin(self) -> None:
        if self._serializable():
            self.logger.debug(f"Acquiring lock for transaction {self.key!r}")
            await _awaited(self.store, "acquire_lock", self.key, holder=self._holder)
        if not self.overwrite and self.store is not None and self.key and await _awaited(
                self.store, "exists", key=self.key):
            self.state = TransactionState.COMMITTED

    async def read(self) -> Any:
        if self.store is not None and self.key:
            return await _awaited(self.store, "read", key=self.key, holder=self._holder)
        return None

    async def reset(self) -> None:
        parent = self._leave()
        if parent is not None:
            result = parent.rollback()
            if inspect.isawaitable(result):
                await result

    async def commit(self) -> bool:
        if not self._claim():
            self._release()
            return False
        try:
            for child in self.children:
                result = child.commit()
                if inspect.isawaitable(result):
                    await result
            for hook in self.on_commit_hooks:
                await self.run_hook(hook, "commit")
            write = self._write_call()
            if write is not None:
                await _awaited(self.store, write[0], *write[1], **write[2])
            self.state = TransactionState.COMMITTED
            self._ending = False
            for child in self._late_children():
                result = child.commit()
                if inspect.isawaitable(result):
                    await result
            self._release()
            return True
        except Exception:  # noqa: BLE001 - as Prefect: an error in a commit rolls it back, logged
            self.logger.exception(f"An error was encountered while committing transaction {self.key!r}")
            self._ending = False
            await self.rollback()
            return False

    async def run_hook(self, hook: TransactionHook, kind: str) -> None:
        import asyncio  # an event loop runs this

        name, logs = self._hook_starts(hook, kind)
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(self)
            else:
                await asyncio.to_thread(hook, self)
        except Exception as error:
            self._hook_ended(name, logs, kind, error)
            raise
        self._hook_ended(name, logs, kind, None)

    async def rollback(self) -> bool:
        if not self._claim():
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                await self.run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                result = child.rollback()
                if inspect.isawaitable(result):
                    await result
            return True
        except Exception:  # noqa: BLE001 - as Prefect: logged, and the rollback reports it did not happen
            self.logger.exception(f"An error was encountered while rolling back transaction {self.key!r}")
            return False
        finally:
            self._ending = False
            self._release()


async def _awaited(store: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """A store's `a<method>` when it has one (Prefect's async twins), else `<method>`."""
    twin = getattr(store, "a" + method, None)
    if twin is not None:
        return await twin(*args, **kwargs)
    return getattr(store, method)(*args, **kwargs)


def _run_coroutine(coroutine: Any) -> None:
    """An async hook or child from a sync transaction: run to its end (`hooks._run_to_end`)."""
    from .hooks import _run_to_end

    _run_to_end(coroutine)


def get_transaction() -> BaseTransaction | None:
    """The transaction open here: inside a task run, that run's own."""
    return BaseTransaction.get_active()


def _store_for(key: str | None, store: Any) -> Any:
    """A keyed transaction with no store records itself in the result store (Prefect's default).
    A store whose metadata goes nowhere (`NullFileSystem`) writes its records whole instead."""
    if key and store is None:
        from .results.result_store import ResultStore

        return ResultStore()
    if store is not None and type(getattr(store, "metadata_storage", None)).__name__ == "NullFileSystem":
        return store.model_copy(update={"metadata_storage": None})
    return store


def _logger(logger: Any) -> Any:
    """The run's logger inside a run (its lines name it), else procflow's transactions logger."""
    from .runlog import current_logger

    return logger or current_logger.get() or _LOGGER


@contextlib.contextmanager
def transaction(key: str | None = None, store: Any = None, commit_mode: CommitMode | None = None,
                isolation_level: IsolationLevel | None = None, overwrite: bool = False,
                write_on_commit: bool = True, logger: Any = None) -> Iterator[Transaction]:
    """Open a transaction: task runs submitted or called inside it are its children.

    With a `key`, it is a record in the result store: committed once, and a later transaction
    with that key begins committed (`overwrite=True` does it again)."""
    with Transaction(key=key, store=_store_for(key, store), commit_mode=commit_mode,
                     isolation_level=isolation_level, overwrite=overwrite, write_on_commit=write_on_commit,
                     logger=_logger(logger)) as txn:
        yield txn


@contextlib.asynccontextmanager
async def atransaction(key: str | None = None, store: Any = None, commit_mode: CommitMode | None = None,
                       isolation_level: IsolationLevel | None = None, overwrite: bool = False,
                       write_on_commit: bool = True, logger: Any = None) -> AsyncIterator[AsyncTransaction]:
    """`transaction()` for `async with`."""
    async with AsyncTransaction(key=key, store=_store_for(key, store), commit_mode=commit_mode,
                                isolation_level=isolation_level, overwrite=overwrite,
                                write_on_commit=write_on_commit, logger=_logger(logger)) as txn:
        yield txn


__all__ = ["AsyncTransaction", "BaseTransaction", "CommitMode", "IsolationLevel", "Transaction",
           "TransactionState", "atransaction", "get_transaction", "transaction"]
