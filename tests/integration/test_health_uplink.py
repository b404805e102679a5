"""The device's `health` records carry what the cloud's fleet table shows: level, components and
outbox depth (read back through the cloud's own batch writer)."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import open_state_db, prepare_state_db
from agent.wiring.health_uplink import HEALTH_STREAM, HealthUplink
from base.health import Level
from cloud.fleet_db import migrate_fleet, open_fleet_engine
from cloud.fleet_db.tables import devices
from cloud.ingest._decode import Read, StoredEnvelope
from cloud.ingest._store import write_batch_blocking
from offline_queue import Outbox

NOW = 1_790_000_000.0


async def test_health_record_reaches_the_fleet_table(tmp_path: Path) -> None:
    config = parse_config({"device": {"store_id": "s1", "device_id": "c1"}}, environ={})
    outbox = await Outbox.open(tmp_path / "state.db", prepare=prepare_state_db, clock=lambda: NOW)
    db = open_state_db(tmp_path / "state.db")
    try:
        ctx = AgentContext(config=config, db=db, services={"outbox": outbox}, wall_clock=lambda: NOW)
        ctx.health.set("sync", Level.AMBER, "disconnected")
        await outbox.put("payment", {"order_id": "o-1"})
        assert await HealthUplink(ctx).send_once() is True
        [record] = await outbox.claim(HEALTH_STREAM, limit=5)
    finally:
        await outbox.close()
        db.close()
    assert record.payload["overall"] == "amber" and record.payload["outbox_depth"] == 1
    assert record.payload["components"]["sync"] == {"level": "amber", "detail": "disconnected"}
    fleet = open_fleet_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    migrate_fleet(fleet)
    stored = StoredEnvelope(
        id=str(uuid.uuid4()),
        store_id="s1",
        device_id="c1",
        stream=HEALTH_STREAM,
        seq=1,
        ts=NOW,
        data=record.payload,
    )
    write_batch_blocking(fleet, [Read(envelopes=(stored,))], NOW)
    with fleet.connect() as conn:
        row = conn.execute(select(devices)).one()
    fleet.dispose()
    assert row.outbox_depth == 1 and row.health["overall"] == "amber"
