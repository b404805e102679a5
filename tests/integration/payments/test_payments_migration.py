"""Migration 0200_payments on a real SQLite file: from empty and from 0002_agent_runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError

from agent.db import current_heads, migrate, open_engine
from pos_bridge.journal import payments


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


@pytest.mark.parametrize("start", [None, "0002_agent_runs"])
def test_payments_migration(tmp_path: Path, start: str | None) -> None:
    engine = open_engine(tmp_path / "s.db")
    if start is not None:
        migrate(engine, start)
        assert "payments" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "0200_payments" in current_heads(engine)
    assert {"payments", "payment_idempotency"} <= set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        conn.execute(insert(payments).values(**_row("A", 1, "failed")))
        conn.execute(insert(payments).values(**_row("A", 2, "cancelled")))
        conn.execute(insert(payments).values(**_row("A", 3, "paid")))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # at most one live attempt per order
        conn.execute(insert(payments).values(**_row("A", 4, "created")))
    engine.dispose()
