"""What every transaction is (Prefect's `BaseTransaction`): its key and store, children,
state, hooks and values, and the rules both kinds share (entering, staging, claiming its end).
`transactions.py` has the two kinds, `with` and `async with`, and the functions that open them.
"""

from __future__ import annotations

import contextvars
import copy
import enum
import logging
import threading
from typing import Any, Callable, ClassVar

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
        self._version = 0  # counts `set()` calls: a worker's copy of the values is made once per version
        self._copied: tuple[Any, Any] | None = None  # (versions, pickled values) sent to workers last

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
        self._version += 1

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


