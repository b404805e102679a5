"""Sync state in a real SQLite state DB: the 0400_sync migration and stable per-stream seqs."""

from __future__ import annotations

from pathlib import Path

import agent.sync as sync_pkg
from agent.db import current_heads, migrate, open_state_db
from agent.sync._store import (
    LIVE_VERSION_KEY,
    assign_seqs_blocking,
    last_seqs_blocking,
    live_config_version_blocking,
    load_live_config_blocking,
    save_live_config_blocking,
)
from base.statedb import StateDB

TABLES = {"sync_streams", "sync_seq", "sync_live_config"}


def table_names(db: StateDB) -> set[str]:
    with db.transaction() as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(name) for (name,) in rows}


def test_migration_on_an_empty_db(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    assert "0400_sync" in current_heads(db)
    assert table_names(db) >= TABLES
    db.close()


def test_migration_on_a_db_at_0002(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db, "0002_agent_runs")
    assert not TABLES & table_names(db)
    migrate(db)
    assert table_names(db) >= TABLES
    db.close()


def test_seqs_count_per_stream_and_survive_a_resend(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    assert assign_seqs_blocking(db, "sale", [10, 11, 12]) == {10: 1, 11: 2, 12: 3}
    assert assign_seqs_blocking(db, "payment", [13]) == {13: 1}
    # Sent again (lost PUBACK, restart): the same numbers; new records continue the count.
    assert assign_seqs_blocking(db, "sale", [11, 12, 14]) == {11: 2, 12: 3, 14: 4}
    # Acknowledged records are forgotten, the counter is not.
    assign_seqs_blocking(db, "sale", [15], acked=[10, 11, 12, 14])
    assert assign_seqs_blocking(db, "sale", [16]) == {16: 6}
    assert last_seqs_blocking(db) == {"sale": 6, "payment": 1}
    db.close()


def test_live_config_persists(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    save_live_config_blocking(db, {"mqtt.batch_max": 5}, "req-1")
    save_live_config_blocking(db, {"mqtt.batch_max": 8, "display.language": "en"}, "req-2")
    assert load_live_config_blocking(db) == {"mqtt.batch_max": 8, "display.language": "en"}
    db.close()


def test_live_config_version_is_stored_beside_the_keys(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    assert live_config_version_blocking(db) == 0
    save_live_config_blocking(db, {"mqtt.batch_max": 5}, "req-1", version=1)
    save_live_config_blocking(db, {"display.language": "en"}, "req-2", version=2)
    assert live_config_version_blocking(db) == 2
    assert load_live_config_blocking(db) == {"mqtt.batch_max": 5, "display.language": "en"}
    with db.transaction() as conn:
        rows = conn.execute("SELECT key, request_id FROM sync_live_config ORDER BY key").fetchall()
    assert rows == [(LIVE_VERSION_KEY, "req-2"), ("display.language", "req-2"), ("mqtt.batch_max", "req-1")]
    db.close()


def test_package_exports_exist() -> None:
    for name in sync_pkg.__all__:
        assert hasattr(sync_pkg, name), name
    assert sorted(sync_pkg.__all__) == sorted(set(sync_pkg.__all__))
