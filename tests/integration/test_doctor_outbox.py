"""The doctor's outbox row on a real state DB: counts queued records and dead letters, and
reads without disturbing a running agent's leases."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.db import migrate, open_engine
from agent.doctor import Environment, Status, check_outbox
from offline_queue import Outbox


async def test_outbox_row_counts_queue_and_dead_letters_without_taking_leases(tmp_path: Path) -> None:
    config = parse_config(
        {"device": {"store_id": "s", "device_id": "d"}, "storage": {"state_dir": str(tmp_path)}}, environ={}
    )
    row = await check_outbox(config, Environment())
    assert row.status is Status.PASS and "not created yet" in row.detail

    engine = open_engine(config.db_path)
    migrate(engine)
    engine.dispose()
    outbox = await Outbox.open(config.db_path)
    try:
        await outbox.put("payment", {"n": 1})
        await outbox.put("payment", {"n": 2})
        await outbox.put("sale", {"n": 3})
        [first] = await outbox.claim("sale", limit=1)
        await outbox.release(first.id, "rejected by broker", permanent=True)
        leased = await outbox.claim("payment", limit=1)
        assert len(leased) == 1

        row = await check_outbox(config, Environment())
        assert row.status is Status.WARN
        assert row.detail == "2 queued, 1 dead letters"
        assert "shopedge queue" in row.hint

        # The lease taken above still holds (payment is claimed in order, head first): the
        # doctor did not end it. Opening a second Outbox would have.
        assert await outbox.claim("payment", limit=2) == []
    finally:
        await outbox.close()
    reopened = await Outbox.open(config.db_path)
    try:
        assert [r.payload for r in await reopened.claim("payment", limit=1)] == [{"n": 1}]
    finally:
        await reopened.close()
