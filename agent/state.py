"""Small device state kept in the agent DB: settings (identity, generated keys) and run history."""

from __future__ import annotations

import time

from base.statedb import StateDB

__all__ = ["StateSettings", "finish_run", "get_setting", "last_run_was_clean", "put_setting", "start_run"]

# The tables are made by the migrations (0001_base, 0002_agent_runs); plain SQL on the state DB.
_GET = "SELECT value FROM settings WHERE key = ?"
_PUT = (
    "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
_LAST_STOP = "SELECT stopped_at FROM agent_runs ORDER BY id DESC LIMIT 1"
_START = "INSERT INTO agent_runs (version, started_at) VALUES (?, ?)"
_FINISH = "UPDATE agent_runs SET stopped_at = ? WHERE id = ?"


def get_setting(db: StateDB, key: str) -> str | None:
    with db.transaction() as conn:
        row = conn.execute(_GET, (key,)).fetchone()
    return None if row is None else str(row[0])


def put_setting(db: StateDB, key: str, value: str) -> None:
    with db.transaction() as conn:
        conn.execute(_PUT, (key, value, time.time()))


class StateSettings:
    """The settings table as the other rooms' port (`ctx.services["settings"]`)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def get_setting_blocking(self, key: str) -> str | None:
        return get_setting(self.db, key)

    def put_setting_blocking(self, key: str, value: str) -> None:
        put_setting(self.db, key, value)


def last_run_was_clean(db: StateDB) -> bool:
    """False when the previous run has no stop time: power loss, SIGKILL or a crash."""
    with db.transaction() as conn:
        row = conn.execute(_LAST_STOP).fetchone()
    return row is None or row[0] is not None


def start_run(db: StateDB, version: str) -> int:
    with db.transaction() as conn:
        cursor = conn.execute(_START, (version, time.time()))
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)


def finish_run(db: StateDB, run_id: int) -> None:
    with db.transaction() as conn:
        conn.execute(_FINISH, (time.time(), run_id))
