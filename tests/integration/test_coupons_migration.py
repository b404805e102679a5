"""Migration 0600_coupons: applies on an empty DB and on one at 0002_agent_runs, keeping data."""

from __future__ import annotations

from pathlib import Path

from agent.db import current_heads, migrate, open_state_db
from agent.state import get_setting, put_setting
from base.statedb import StateDB
from membership.coupons import Fact, FactKind, facts_since_blocking, record_fact_blocking

TABLES = {"coupon_ledger", "coupon_campaign_stops", "funnel_facts", "member_tags"}


def table_names(db: StateDB) -> set[str]:
    with db.transaction() as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_coupons_migration_on_empty_db(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    assert "0600_coupons" in current_heads(db)
    assert table_names(db) >= TABLES
    fact = Fact(kind=FactKind.NEW_FRIEND, store_id="s", device_id="d", at=1.0, line_user_id="U1")
    assert record_fact_blocking(db, fact)
    assert not record_fact_blocking(db, fact)  # the same fact twice counts once
    other_counter = Fact(kind=FactKind.NEW_FRIEND, store_id="s", device_id="d2", at=1.0, line_user_id="U1")
    assert record_fact_blocking(db, other_counter)  # another counter's fact is its own
    assert facts_since_blocking(db, 0) == [fact, other_counter]
    db.close()


def test_coupons_migration_from_agent_runs(tmp_path: Path) -> None:
    db = open_state_db(tmp_path / "s.db")
    migrate(db, "0002_agent_runs")
    put_setting(db, "device_identity", "abc")
    assert not TABLES & table_names(db)
    migrate(db)
    assert "0600_coupons" in current_heads(db)
    assert table_names(db) >= TABLES
    assert get_setting(db, "device_identity") == "abc"
    db.close()
