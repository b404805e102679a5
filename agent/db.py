"""The agent's state database: one SQLite file (WAL) in the state directory.

Owns opening it (`base.statedb.StateDB`: pragmas on every connection) and bringing its schema
up to date with the Alembic migrations in `agent/migrations`, applied at start so a device in the
field upgrades in place. Each capability adds its own migration branch off the base revision,
and `upgrade("heads")` applies them all. Alembic and SQLAlchemy (~0.7 s and ~25 MB together on
this machine) are imported only when the stored revisions differ from the code's, which
`code_heads` reads from the revision files themselves; most starts load neither.
"""

from __future__ import annotations

import ast
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.statedb import StateDB

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

__all__ = [
    "code_heads",
    "current_heads",
    "migrate",
    "open_engine",
    "open_state_db",
    "prepare_state_db",
    "script_heads",
    "stored_heads",
]

MIGRATIONS = Path(__file__).with_name("migrations")
_HAS_VERSION_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_state_db(path: Path) -> StateDB:
    """The state DB at `path` (its directory created if missing), as every room uses it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return StateDB(path)


def open_engine(path: Path) -> Engine:
    """An SQLAlchemy engine on the state DB, for Alembic and schema inspection only; every
    connection gets WAL, FULL sync and a busy timeout like `StateDB`'s."""
    from sqlalchemy import create_engine, event

    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", future=True)
    event.listen(engine, "connect", _on_connect)
    return engine


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@functools.cache
def code_heads() -> frozenset[str]:
    """The head revisions this code's migrations end in, read from the revision files (their
    `revision` and `down_revision` assignments) without importing Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, expr = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, expr = node.target, node.value
            else:
                continue
            if not isinstance(target, ast.Name) or target.id not in ("revision", "down_revision"):
                continue
            value = ast.literal_eval(expr)
            if target.id == "revision":
                revisions.add(str(value))
            elif value is not None:
                parents.update([value] if isinstance(value, str) else value)
    return frozenset(revisions - parents)


def _engine(db: StateDB | Engine) -> tuple[Engine, bool]:
    """An engine for Alembic on `db`, and whether it is ours to dispose of."""
    if isinstance(db, StateDB):
        return open_engine(db.path), True
    return db, False


def stored_heads(db: StateDB | Engine) -> frozenset[str]:
    """The revisions the database says it is at (empty for a new file), read without Alembic.
    The migration tests and tools may hand an SQLAlchemy engine instead of the StateDB."""
    if isinstance(db, StateDB):
        if not db.path.exists():  # a new device: nothing applied, and no empty file left behind
            return frozenset()
        with db.transaction() as conn:
            return _stored_heads(conn.execute)
    with db.connect() as connection:
        return _stored_heads(connection.exec_driver_sql)


def _stored_heads(execute: Callable[[str], Any]) -> frozenset[str]:
    if execute(_HAS_VERSION_TABLE).fetchone() is None:  # nothing applied yet
        return frozenset()
    return frozenset(str(row[0]) for row in execute("SELECT version_num FROM alembic_version").fetchall())


def migrate(db: StateDB | Engine, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (default: every branch head). Idempotent; when the
    database is already at the code's heads, neither Alembic nor SQLAlchemy is imported."""
    if revision == "heads" and stored_heads(db) == code_heads():
        return
    from alembic import command

    engine, owned = _engine(db)
    try:
        command.upgrade(_alembic_config(engine), revision)
    finally:
        if owned:
            engine.dispose()


def current_heads(db: StateDB | Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine, owned = _engine(db)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        if owned:
            engine.dispose()


def script_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def prepare_state_db(path: Path) -> None:
    """Create or upgrade the state DB at `path` (what `Outbox.open(prepare=...)` runs first)."""
    db = open_state_db(path)
    try:
        migrate(db)
    finally:
        db.close()
