"""The payment journal's stale-write guard on a real SQLite state DB (issue 14, item 4)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from agent.db import migrate, open_state_db
from pos_bridge.journal import Journal, StaleWrite
from pos_bridge.payment_flow import State
from tests.unit.pos_bridge.test_payment_flow import NOW, payment


def test_the_journal_refuses_a_stale_write(tmp_path: Path) -> None:
    """Two writers read v1; the first saves v2, the second's v2 (from the old v1) must not land,
    nor may an older version overwrite a newer one."""
    engine = open_state_db(tmp_path / "state.db")
    migrate(engine)

    class NoOutbox:
        async def put(self, *args: object, **kwargs: object) -> int:
            return 0

    journal = Journal(engine, outbox=lambda: NoOutbox(), clock=lambda: NOW)  # type: ignore[arg-type,return-value]

    async def scenario() -> None:
        created = await journal.create(payment(State.CREATED))
        v1 = dataclasses.replace(created, state=State.AUTHORIZING, version=created.version + 1, sent_at=NOW)
        await journal.save(v1)
        winner = dataclasses.replace(v1, state=State.PAID, version=v1.version + 1, paid_amount=100)
        loser = dataclasses.replace(v1, state=State.FAILED, version=v1.version + 1, error_code="x")
        await journal.save(winner)
        with pytest.raises(StaleWrite):
            await journal.save(loser)
        with pytest.raises(StaleWrite):
            await journal.save(v1)  # an older version never overwrites a newer one
        stored = await journal.latest("A1")
        assert stored is not None and (stored.state, stored.version) == (State.PAID, winner.version)

    try:
        asyncio.run(scenario())
    finally:
        engine.close()
