"""Alembic migrations on a real SQLite file: from empty, and from the previous revision."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from agent.db import current_heads, migrate, open_engine, script_heads
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
    migrate(engine, "0001_base")
    put_setting(engine, "device_identity", "abc")
    assert "agent_runs" not in inspect(engine).get_table_names()
    migrate(engine)
    assert current_heads(engine) == script_heads()
    assert get_setting(engine, "device_identity") == "abc"
    engine.dispose()


def test_unclean_stop_is_detected(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine)
    assert last_run_was_clean(engine)
    start_run(engine, "test")
    assert not last_run_was_clean(engine)
    engine.dispose()
