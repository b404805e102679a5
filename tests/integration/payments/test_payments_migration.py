"""Migrations 0200_payments and 0250_idempotency_scope on a real SQLite file: from empty, from
0002_agent_runs, and 0250 over keys stored the old way."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from agent.db import _alembic_config, current_heads, migrate, open_engine


def _row(order_id: str, attempt: int, state: str) -> dict[str, object]:
    return dict(
        line_order_id=f"{order_id}.{attempt}",
        order_id=order_id,
        attempt=attempt,
        method="qr",
        amount=1,
        currency="TWD",
        product_name="x",
        state=state,
        version=0,
        paid_amount=0,
        refunded_amount=0,
        refund_pending=0,
        refund_base=0,
        fail_after_refund=False,
        created_at=0.0,
        updated_at=0.0,
        outboxed_version=-1,
    )


def _insert(conn: Connection, row: dict[str, object]) -> None:
    names = ", ".join(row)
    conn.execute(text(f"INSERT INTO payments ({names}) VALUES ({', '.join(':' + n for n in row)})"), row)


@pytest.mark.parametrize("start", [None, "0002_agent_runs"])
def test_payments_migration(tmp_path: Path, start: str | None) -> None:
    engine = open_engine(tmp_path / "s.db")
    if start is not None:
        migrate(engine, start)
        assert "payments" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "0250_idempotency_scope" in current_heads(engine)
    assert {"payments", "payment_idempotency"} <= set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        _insert(conn, _row("A", 1, "failed"))
        _insert(conn, _row("A", 2, "cancelled"))
        _insert(conn, _row("A", 3, "paid"))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # at most one live attempt per order
        _insert(conn, _row("A", 4, "created"))
    engine.dispose()


def test_idempotency_scope_migration_keeps_every_key_meaning(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "s.db")
    migrate(engine, "0200_payments")
    with engine.begin() as conn:
        for key in ("pay-1", "refund:r-1"):
            conn.execute(
                text(
                    "INSERT INTO payment_idempotency (key, request_hash, order_id, line_order_id, created_at) "
                    "VALUES (:k, 'h', 'A', 'A', 0)"
                ),
                {"k": key},
            )
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT scope, key FROM payment_idempotency ORDER BY scope")).all()
    assert [tuple(r) for r in rows] == [("payment", "pay-1"), ("refund", "r-1")]
    with engine.begin() as conn:  # the same key text in both scopes is now two rows
        conn.execute(
            text(
                "INSERT INTO payment_idempotency (scope, key, request_hash, order_id, line_order_id, created_at) "
                "VALUES ('payment', 'r-1', 'h2', 'B', 'B', 0)"
            )
        )
    command.downgrade(_alembic_config(engine), "0250_idempotency_scope-1")  # the old flat keys again
    with engine.connect() as conn:
        keys = sorted(r[0] for r in conn.execute(text("SELECT key FROM payment_idempotency")))
    assert keys == ["pay-1", "r-1", "refund:r-1"]
    engine.dispose()
