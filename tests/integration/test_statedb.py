"""base.statedb.StateDB on a real SQLite file: the pragmas every connection gets, commit and
rollback, the pool across threads, what happens to a connection that fails, close, read-only."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from base.statedb import IDLE_CONNECTIONS, StateDB


def _table(db: StateDB) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE sales (order_id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")


def _orders(db: StateDB) -> list[str]:
    with db.transaction() as conn:
        return [row[0] for row in conn.execute("SELECT order_id FROM sales ORDER BY order_id")]


def test_every_connection_is_wal_full_sync_with_foreign_keys(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "s.db")
    with db.transaction() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    db.close()


def test_a_block_commits_and_a_raising_block_leaves_nothing(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "s.db")
    _table(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO sales VALUES ('A1', 100)")

    def gives_up() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO sales VALUES ('A2', 200)")
            raise ValueError("till gave up")

    def duplicate() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO sales VALUES ('A3', 300)")
            conn.execute("INSERT INTO sales VALUES ('A1', 100)")  # the whole block goes

    with pytest.raises(ValueError, match="till gave up"):
        gives_up()
    with pytest.raises(sqlite3.IntegrityError):
        duplicate()
    assert _orders(db) == ["A1"]
    other = StateDB(tmp_path / "s.db")  # another process's view: committed means on disk
    assert _orders(other) == ["A1"]
    db.close()
    other.close()


def test_connections_are_reused_across_threads_and_the_pool_stays_bounded(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "s.db")
    _table(db)
    barrier = threading.Barrier(IDLE_CONNECTIONS + 3)
    errors: list[BaseException] = []

    def sale(i: int) -> None:
        try:
            with db.transaction() as conn:
                barrier.wait(10)  # every thread holds its own connection at once
                conn.execute("INSERT INTO sales VALUES (?, ?)", (f"T{i:02d}", i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sale, args=(i,)) for i in range(IDLE_CONNECTIONS + 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(_orders(db)) == IDLE_CONNECTIONS + 3
    assert len(db._idle) == IDLE_CONNECTIONS  # the extra ones were closed, not kept
    db.close()
    assert db._idle == []


def test_the_body_error_survives_a_connection_closed_under_it(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "s.db")

    def closed_under() -> None:
        with db.transaction() as conn:
            conn.close()
            raise ValueError("original")

    with pytest.raises(ValueError, match="original"):
        closed_under()
    assert db._idle == []  # the dead connection is not handed out again
    _table(db)  # and the next block gets a working one
    assert _orders(db) == []
    db.close()


def test_a_connection_in_use_at_close_is_closed_when_its_block_ends(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "s.db")
    _table(db)
    with db.transaction() as conn:
        db.close()
        conn.execute("INSERT INTO sales VALUES ('late', 1)")
    assert db._idle == []
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    assert _orders(db) == ["late"]  # the handle is still usable, like Engine.dispose()
    db.close()


def test_read_only_reads_a_path_with_uri_characters_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "shop #1 ?%" / "s.db"
    path.parent.mkdir()
    db = StateDB(path)
    _table(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO sales VALUES ('R1', 5)")
    reader = StateDB(path, read_only=True)
    assert _orders(reader) == ["R1"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"), reader.transaction() as conn:
        conn.execute("INSERT INTO sales VALUES ('R2', 6)")
    assert _orders(db) == ["R1"]
    reader.close()
    db.close()


async def test_write_runs_on_the_route_while_one_is_set_and_on_the_pool_otherwise(tmp_path: Path) -> None:
    """The daemon routes `write()` to the outbox's writer thread; without a route (and after
    it is taken away, before the outbox closes) a body commits on a pooled connection."""
    from agent.db import prepare_state_db
    from offline_queue import Outbox

    path = tmp_path / "state.db"
    db = StateDB(path)
    _table(db)
    box = await Outbox.open(path, prepare=prepare_state_db)
    routed: list[str] = []

    def insert(order_id: str) -> Callable[[sqlite3.Connection], str]:
        def body(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO sales VALUES (?, 1)", (order_id,))
            return order_id

        return body

    async def route(body: Callable[[sqlite3.Connection], Any]) -> Any:
        routed.append("outbox")
        return await box.transaction(body)

    try:
        assert await db.write(insert("A")) == "A"
        db.route_writes(route)
        assert await db.write(insert("B")) == "B"
        with pytest.raises(sqlite3.IntegrityError):
            await db.write(insert("B"))  # the body's error, unchanged, through the route
        db.route_writes(None)
        assert await db.write(insert("C")) == "C"
    finally:
        await box.close()
    assert routed == ["outbox", "outbox"]
    assert _orders(db) == ["A", "B", "C"]
    db.close()


async def test_a_write_routed_to_a_stopped_outbox_commits_on_the_pool(tmp_path: Path) -> None:
    """An outbox writer that has stopped (closed, or crashed) never stops the journal's writes."""
    from agent.daemon import _via_outbox
    from agent.db import prepare_state_db
    from offline_queue import Outbox

    path = tmp_path / "state.db"
    db = StateDB(path)
    _table(db)
    box = await Outbox.open(path, prepare=prepare_state_db)
    db.route_writes(_via_outbox(box))

    def insert(conn: sqlite3.Connection) -> int:
        return conn.execute("INSERT INTO sales VALUES ('late', 1)").rowcount

    await box.close()
    assert await db.write(insert) == 1
    assert _orders(db) == ["late"]
    db.close()
