"""Sync state in a real SQLite state DB: the 0400_sync migration and stable per-stream seqs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

import agent.sync as sync_pkg
from agent.db import current_heads, migrate, open_engine
from agent.sync._store import (
    assign_seqs_blocking,
    last_seqs_blocking,
    load_live_config_blocking,
    save_live_config_blocking,
)

TABLES = {"sync_streams", "sync_seq", "sync_live_config"}


def test_migration_on_an_empty_db(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine)
    assert "0400_sync" in current_heads(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_migration_on_a_db_at_0002(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine, "0002_agent_runs")
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_seqs_count_per_stream_and_survive_a_resend(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine)
    assert assign_seqs_blocking(engine, "sale", [10, 11, 12]) == {10: 1, 11: 2, 12: 3}
    assert assign_seqs_blocking(engine, "payment", [13]) == {13: 1}
    # Sent again (lost PUBACK, restart): the same numbers; new records continue the count.
    assert assign_seqs_blocking(engine, "sale", [11, 12, 14]) == {11: 2, 12: 3, 14: 4}
    # Acknowledged records are forgotten, the counter is not.
    assign_seqs_blocking(engine, "sale", [15], acked=[10, 11, 12, 14])
    assert assign_seqs_blocking(engine, "sale", [16]) == {16: 6}
    assert last_seqs_blocking(engine) == {"sale": 6, "payment": 1}
    engine.dispose()


def test_live_config_persists(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine)
    save_live_config_blocking(engine, {"mqtt.batch_max": 5}, "req-1")
    save_live_config_blocking(engine, {"mqtt.batch_max": 8, "display.language": "en"}, "req-2")
    assert load_live_config_blocking(engine) == {"mqtt.batch_max": 8, "display.language": "en"}
    engine.dispose()


def test_package_exports_exist() -> None:
    for name in sync_pkg.__all__:
        assert hasattr(sync_pkg, name), name
    assert sorted(sync_pkg.__all__) == sorted(set(sync_pkg.__all__))
