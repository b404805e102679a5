"""The one writer thread of the outbox: group commits.

The writer takes whatever operations have queued up while the previous commit was being
fsynced and runs them all in ONE transaction, so a burst of 100 puts costs one fsync, not 100.
If that transaction fails, each operation is retried alone so one bad operation cannot fail its
neighbours.

The state DB's other writers (the payment journal) can run their transactions here too
(`Outbox.transaction`): one writer per file means no SQLite lock contention between threads
(whose busy handler sleeps 1, 2, 5 ms... while the other holds the lock through its fsync),
and a journal write that arrives during a commit shares the next fsync with the outbox's puts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from offline_queue._model import (
    OutboxClosedError,
    OutboxError,
    OutboxWriteError,
)
from offline_queue._store import HOUSEKEEPING_IDLE_S, MAX_BATCH, Store, Usage

__all__ = ["BatchResult", "Writer"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Op:
    fn: Callable[[Store], Any]
    full: bool
    write: bool
    future: asyncio.Future[Any]
    foreign: bool = False  # another room's transaction body: its exceptions reach it unchanged


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """What one group commit tells the health report: the last write error, whether any write
    succeeded, and whether a committed transaction stored a new record."""

    failure: OutboxWriteError | None
    wrote: bool
    stored: bool = False


class Writer(threading.Thread):
    """The one thread that touches the outbox's connection; runs queued operations in group commits.

    `full` operations (critical puts, acks, releases, retries) make their batch commit with
    `synchronous=FULL` (the WAL is fsynced before the futures resolve); a batch of only telemetry
    puts and claims commits with `synchronous=NORMAL`, which in WAL mode can lose the last commits
    on power loss but never corrupts or reorders (and the next FULL commit syncs them too).
    """

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_batch: Callable[[BatchResult], None],
    ) -> None:
        super().__init__(name="shopedge.outbox.writer", daemon=True)
        self.store = store
        self.loop = loop
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._sync_full = True
        self.closed = False
        self.batches = 0
        self.ops = 0

    def submit(
        self, fn: Callable[[Store], Any], *, full: bool, write: bool = True, foreign: bool = False
    ) -> asyncio.Future[Any]:
        """Queue one operation; the future resolves on the loop after its batch committed.

        `full` asks for a `synchronous=FULL` commit; `write=False` marks a read, whose success
        says nothing about whether the disk still takes writes (health stays as it was).
        `foreign` marks another room's transaction body: what it raises is its own business
        (its future gets the exception itself, not an `OutboxWriteError`), and only an SQLite
        operational error (the file refusing writes) counts against the outbox's health.
        """
        if self.closed:
            raise OutboxClosedError("the outbox is closed")
        future: asyncio.Future[Any] = self.loop.create_future()
        self._queue.put(_Op(fn, full, write, future, foreign))
        return future

    def stop(self) -> None:
        self.closed = True
        self._queue.put(None)

    def run(self) -> None:
        try:
            self._loop_blocking()
        except BaseException as exc:  # the writer must never die silently: fail what is queued
            log.exception("outbox writer crashed")
            self.closed = True
            self._fail_pending(OutboxWriteError(f"outbox writer crashed: {exc!r}"))
            raise
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.store.conn.close()

    def _loop_blocking(self) -> None:
        while True:
            try:
                op = self._queue.get(timeout=HOUSEKEEPING_IDLE_S)
            except queue.Empty:
                self._housekeeping_blocking()
                continue
            if op is None:
                return
            batch = [op]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch_blocking(batch)
            if stop:
                return

    def _housekeeping_blocking(self) -> None:
        try:
            self._transaction_blocking(full=True, ops=[lambda s: s.housekeeping_blocking()])
        except sqlite3.Error as exc:
            log.warning("outbox housekeeping failed", extra={"error": str(exc)})

    def _transaction_blocking(self, *, full: bool | None, ops: Iterable[Callable[[Store], Any]]) -> list[Any]:
        """Run `ops` in one transaction; `full` picks the commit's sync level (None: reads, keep it)."""
        conn = self.store.conn
        if full is not None and full != self._sync_full:
            conn.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._sync_full = full
        saved = Usage(self.store.usage.total, self.store.usage.telemetry)
        inserted = self.store.inserted
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [fn(self.store) for fn in ops]
            conn.execute("COMMIT")
        except BaseException:
            self.store.usage = saved
            self.store.inserted = inserted
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return results

    def _run_batch_blocking(self, batch: list[_Op]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        failure: OutboxWriteError | None = None
        wrote = False
        inserted = self.store.inserted
        try:
            results = self._transaction_blocking(full=_sync_level(batch), ops=[op.fn for op in batch])
            outcomes = [(op.future, result, None) for op, result in zip(batch, results, strict=True)]
            wrote = any(op.write for op in batch)
        except Exception as batch_exc:
            # A foreign body's own refusal (a duplicate order) is its caller's news, not the disk's.
            ordinary = _disk_trouble(batch_exc) or not any(op.foreign for op in batch)
            if len(batch) > 1 and ordinary:
                log.warning(
                    "outbox batch failed; retrying its operations one by one", extra={"error": str(batch_exc)}
                )
            for op in batch:
                try:
                    (result,) = self._transaction_blocking(full=_sync_level([op]), ops=[op.fn])
                    outcomes.append((op.future, result, None))
                    wrote = wrote or op.write
                except Exception as exc:
                    if not op.foreign:
                        failure = _write_error(exc)
                        outcomes.append((op.future, None, failure))
                        continue
                    if _disk_trouble(exc):
                        failure = _write_error(exc)
                    outcomes.append((op.future, None, exc))
        self.batches += 1
        self.ops += len(batch)
        stored = self.store.inserted > inserted
        self._deliver(outcomes, BatchResult(failure=failure, wrote=wrote, stored=stored))

    def _deliver(
        self,
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
        result: BatchResult,
    ) -> None:
        def resolve() -> None:
            for future, value, exc in outcomes:
                if future.done():
                    continue
                if exc is not None:
                    future.set_exception(exc)
                elif isinstance(value, OutboxError):
                    future.set_exception(value)
                else:
                    future.set_result(value)
            self._on_batch(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(resolve)

    def _fail_pending(self, exc: OutboxWriteError) -> None:
        pending: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is not None:
                pending.append((op.future, None, exc))
        self._deliver(pending, BatchResult(failure=exc, wrote=False))


def _sync_level(batch: Sequence[_Op]) -> bool | None:
    """FULL if any operation asks for it, NORMAL for writes that do not, None for reads only."""
    if any(op.full for op in batch):
        return True
    return False if any(op.write for op in batch) else None


def _disk_trouble(exc: BaseException) -> bool:
    """Whether a foreign body's exception says the file refuses writes (full disk, I/O error,
    locked), as the outbox's health reports; a constraint it broke (a key used twice) does not."""
    return isinstance(exc, sqlite3.OperationalError)


def _write_error(exc: Exception) -> OutboxWriteError:
    if isinstance(exc, OutboxWriteError):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorname", "")
        return OutboxWriteError(f"SQLite could not write the outbox ({code or type(exc).__name__}): {exc}")
    return OutboxWriteError(f"outbox operation failed: {exc!r}")
