"""Alembic migrations on a real SQLite file: from empty, and from the previous revision."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from agent.db import current_heads, migrate, open_engine, open_state_db, script_heads
from agent.state import get_setting, last_run_was_clean, put_setting, start_run


def test_migrate_empty_db_to_heads(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine)
    assert current_heads(engine) == script_heads()
    assert {"settings", "agent_runs"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    migrate(engine)  # idempotent
    engine.dispose()


def test_migrate_from_previous_revision_keeps_data(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    db = open_state_db(tmp_path / "s.db")
    migrate(db, "0001_base")
    put_setting(db, "device_identity", "abc")
    assert "agent_runs" not in inspect(engine).get_table_names()
    migrate(db)
    assert current_heads(db) == script_heads()
    assert get_setting(db, "device_identity") == "abc"
    db.close()
    engine.dispose()


def test_unclean_stop_is_detected(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    assert last_run_was_clean(db)
    start_run(db, "test")
    assert not last_run_was_clean(db)
    db.close()
