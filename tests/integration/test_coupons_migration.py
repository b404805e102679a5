"""Migration 0600_coupons: applies on an empty DB and on one at 0002_agent_runs, keeping data."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from agent.db import current_heads, migrate, open_engine
from agent.state import get_setting, put_setting
from membership.coupons import Fact, FactKind, facts_since_blocking, record_fact_blocking

TABLES = {"coupon_ledger", "coupon_campaign_stops", "funnel_facts", "member_tags"}


def test_coupons_migration_on_empty_db(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine)
    assert "0600_coupons" in current_heads(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    fact = Fact(kind=FactKind.NEW_FRIEND, store_id="s", device_id="d", at=1.0, line_user_id="U1")
    assert record_fact_blocking(engine, fact)
    assert not record_fact_blocking(engine, fact)  # the same fact twice counts once
    other_counter = Fact(kind=FactKind.NEW_FRIEND, store_id="s", device_id="d2", at=1.0, line_user_id="U1")
    assert record_fact_blocking(engine, other_counter)  # another counter's fact is its own
    assert facts_since_blocking(engine, 0) == [fact, other_counter]
    engine.dispose()


def test_coupons_migration_from_agent_runs(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine, "0002_agent_runs")
    put_setting(engine, "device_identity", "abc")
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate(engine)
    assert "0600_coupons" in current_heads(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert get_setting(engine, "device_identity") == "abc"
    engine.dispose()
