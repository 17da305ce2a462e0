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
import inspect
from typing import Any, AsyncIterator, Iterator

from .runlog import current_or
from .transaction_base import (_LOGGER, BaseTransaction, CommitMode, IsolationLevel, TransactionHook, TransactionState,
                               _awaited, _run_coroutine, get_transaction)


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
    """The logger given, else the run's (inside a run), else procflow's transactions logger."""
    return logger or current_or(_LOGGER)


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

