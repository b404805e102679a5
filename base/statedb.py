"""Plain SQL on the device's state database, for the statements every sale runs.

The state DB is one SQLite file opened by an SQLAlchemy engine (pool, pragmas on connect,
Alembic migrations). For the few statements a sale runs several times over, SQLAlchemy's execute
path (result objects, events, parameter processing) cost more CPU than SQLite itself
(bench/footprint.py, issue 17), so those go straight to the pooled `sqlite3` connection: same
pool, same pragmas, same file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["CHUNK", "chunks", "placeholders", "transaction"]

CHUNK = 500  # ids per IN list, well under SQLite's limit on bound parameters


def placeholders(count: int) -> str:
    """`?, ?, ?` for `count` bound values (an IN list, a VALUES row).

    offline_queue keeps its own copy: it is a leaf and imports no project package.
    """
    return ", ".join("?" * count)


def chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """`ids` in slices of at most `CHUNK`, one IN list each."""
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[sqlite3.Connection]:
    """A pooled sqlite3 connection in one transaction: committed when the block ends, rolled
    back when it raises, returned to the pool either way.

    sqlite3 opens the transaction at the first write (its default isolation level), as it did
    under SQLAlchemy's pysqlite dialect, so a block that only reads takes no write lock.
    """
    pooled = engine.raw_connection()
    try:
        conn = pooled.driver_connection
        if not isinstance(conn, sqlite3.Connection):
            raise TypeError(f"the state database is SQLite; this engine's driver gave {type(conn).__name__}")
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    finally:
        pooled.close()
