"""The agent's state database: one SQLite file (WAL) in the state directory.

Owns opening it (pragmas on every connection) and bringing its schema up to date with the
Alembic migrations in `agent/migrations`, applied at every start so a device in the field
upgrades in place. Each capability adds its own migration branch off the base revision, and
`upgrade("heads")` applies them all.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event

__all__ = ["current_heads", "migrate", "open_engine", "prepare_state_db", "script_heads"]

MIGRATIONS = Path(__file__).with_name("migrations")


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(path: Path) -> Engine:
    """An engine for the state DB; every connection gets WAL, FULL sync and a busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", future=True)
    event.listen(engine, "connect", _on_connect)
    return engine


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (default: every branch head). Idempotent."""
    command.upgrade(_alembic_config(engine), revision)


def current_heads(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def script_heads() -> set[str]:
    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def prepare_state_db(path: Path) -> None:
    """Create or upgrade the state DB at `path` (what `Outbox.open(prepare=...)` runs first)."""
    engine = open_engine(path)
    try:
        migrate(engine)
    finally:
        engine.dispose()
