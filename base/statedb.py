"""The device's state database: one SQLite file, a few pooled `sqlite3` connections, plain SQL.

Every room that keeps state on the device (the payment journal, conversions, coupons, the
greeter, the sync seqs, settings) runs its statements through `StateDB.transaction()`. The
daemon used to open the file through SQLAlchemy; its import alone was ~0.37 s of a 2 s start and
~14 MB of resident memory, and its execute path cost more CPU per statement than SQLite itself
(bench/footprint.py, issue 17). The schema is still written as Alembic migrations
(`agent/migrations`), and SQLAlchemy is imported only when one has to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["CHUNK", "RouteClosed", "StateDB", "WriteRoute", "chunks", "placeholders"]

_T = TypeVar("_T")

CHUNK = 500  # ids per IN list, well under SQLite's limit on bound parameters
IDLE_CONNECTIONS = 5  # kept open between uses, as SQLAlchemy's QueuePool did
BUSY_TIMEOUT_MS = 5000
# Page cache per pooled connection (KiB; SQLite's default is 2000). In the daemon the pool mostly
# serves lookups by key (the writes go to the outbox's writer connection), and each of up to six
# connections' caches grew toward the default as the file grew, for pages the OS page cache
# holds anyway (resident memory grew with the sales: bench/footprint.py).
CACHE_KIB = 512


def placeholders(count: int) -> str:
    """`?, ?, ?` for `count` bound values (an IN list, a VALUES row).

    offline_queue keeps its own copy: it is a leaf and imports no project package.
    """
    return ", ".join("?" * count)


class WriteRoute(Protocol):
    """Runs a write transaction's body on the file's one writer thread (`Outbox.transaction`);
    raises `RouteClosed`, having run nothing, when that writer is gone."""

    def __call__(self, body: Callable[[sqlite3.Connection], _T], /) -> Awaitable[_T]: ...


class RouteClosed(Exception):
    """The routed writer has stopped (closed, or crashed): `write()` runs the body on the pool."""


def chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """`ids` in slices of at most `CHUNK`, one IN list each."""
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


class StateDB:
    """The state DB file with a small pool of connections, each used by one thread at a time.

    Every connection gets WAL, `synchronous=FULL` (a committed sale survives a power cut),
    foreign keys and a busy timeout. `read_only` opens the file with SQLite's `mode=ro` (the
    CLI's reports beside a running daemon) and changes no pragma that would write.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._route: WriteRoute | None = None

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            pragmas: tuple[str, ...] = (
                f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
                f"PRAGMA cache_size=-{CACHE_KIB}",
            )
        else:
            conn = sqlite3.connect(self.path, check_same_thread=False)
            pragmas = (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA foreign_keys=ON",
                f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
                f"PRAGMA cache_size=-{CACHE_KIB}",
            )
        try:
            for pragma in pragmas:
                conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        return conn

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            self._closed = False
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _checkin(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection in one transaction: committed when the block ends, rolled back
        when it raises, returned to the pool either way.

        sqlite3 opens the transaction at the first write (its default isolation level), so a
        block that only reads takes no write lock.
        """
        conn = self._checkout()
        reusable = False
        try:
            try:
                yield conn
                conn.commit()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.rollback()
                raise
            reusable = True
        finally:
            # A connection whose rollback failed too (an I/O error) is not reused.
            if not reusable:
                try:
                    reusable = not conn.in_transaction
                except sqlite3.Error:  # closed under us
                    reusable = False
            if reusable:
                self._checkin(conn)
            else:
                _close_quietly(conn)

    def route_writes(self, route: WriteRoute | None) -> None:
        """Send `write()` bodies to `route` (the outbox's writer thread) from now on; None: back to
        a pooled connection on a worker thread (before the outbox closes)."""
        self._route = route

    async def write(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `body` in one write transaction, durable when this returns.

        With a route (the daemon routes to the outbox's writer), the body joins the writer's
        next group commit: writers on separate connections of one file take turns at SQLite's
        lock, and one waiting for it sleeps in 1, 2, 5 ms steps while the other fsyncs, which
        was most of a sale's wait at the counter (bench/footprint.py). Without a route it runs
        on a pooled connection in a worker thread. Either way `body` must not commit itself,
        and may run twice (a shared batch that failed is retried one body at a time).
        """
        route = self._route
        if route is not None:
            with contextlib.suppress(RouteClosed):  # a stopped writer must not stop the journal
                return await route(body)
        return await asyncio.to_thread(self._write_blocking, body)

    def _write_blocking(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        with self.transaction() as conn:
            return body(conn)

    def close(self) -> None:
        """Close the pooled connections (the daemon's last step); one still in use is closed
        when its block ends. Like SQLAlchemy's `Engine.dispose()` it leaves the handle usable:
        a later block opens a new connection (a test or the demo reading what the stopped
        daemon wrote)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()
