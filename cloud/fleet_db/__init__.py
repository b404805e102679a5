"""The fleet database: PostgreSQL through SQLAlchemy 2 and psycopg 3, or one SQLite file.

Owns opening it (`open_fleet_engine`: timeouts, SQLite pragmas) and bringing its schema up to
date with its own Alembic history (`cloud/fleet_db/migrations`, version table
`fleet_alembic_version`, apart from the device's `agent/migrations`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url

from cloud.fleet_db import tables

__all__ = [
    "current_heads",
    "migrate_fleet",
    "open_fleet_engine",
    "script_heads",
    "tables",
    "write_transaction",
]

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "fleet_alembic_version"
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 60_000
_WRITE = "fleet_write"


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN IMMEDIATE
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={CONNECT_TIMEOUT_S * 1000}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A writer takes the write lock up front, so two workers never deadlock upgrading a read
    # lock; readers (report, HQ page) begin deferred and never block a writer.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on success, rolled back on any error."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def open_fleet_engine(url: str) -> Engine:
    """An engine for `url` (sqlite:///PATH or postgresql+psycopg://...), with explicit timeouts."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate_fleet(engine: Engine, revision: str = "heads") -> None:
    """Apply the fleet migrations up to `revision`. Idempotent."""
    command.upgrade(_alembic_config(engine), revision)


def current_heads(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return set(context.get_current_heads())


def script_heads() -> set[str]:
    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())
