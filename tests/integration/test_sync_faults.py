"""Issue 14, item 1, for the uplink: one record the broker can never take does not stop its
stream. A real Mosquitto with `message_size_limit` hangs up on a client that publishes more
(MQTT 5 has no PUBACK code for it), so before the fix the held record was resent first on
every reconnect, forever, and nothing behind it left the device."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import SyncService
from offline_queue import Outbox
from tests.integration.sync_brokers import Broker, make_mosquitto
from tests.integration.sync_support import cloud_consumer, device_config

LIMIT = 4096


async def test_a_record_too_big_for_the_broker_is_dead_lettered_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    broker: Broker = make_mosquitto(
        tmp_path / "mq", extra=["allow_anonymous true", f"message_size_limit {LIMIT}"]
    )
    broker.start()
    try:
        config = device_config(broker, tmp_path, max_message_bytes=LIMIT)
        db = open_state_db(config.db_path)
        migrate(db)
        outbox = await Outbox.open(config.db_path)
        await outbox.put("sale", {"n": 1})
        await outbox.put("sale", {"n": 2, "blob": "x" * (2 * LIMIT)})
        await outbox.put("sale", {"n": 3})
        service = SyncService(AgentContext(config=config, db=db, services={"outbox": outbox}))
        async with cloud_consumer(broker) as cloud:
            task = asyncio.create_task(service.run())
            try:
                await cloud.wait_for(lambda: [e["data"]["n"] for e in cloud.envelopes("sale")] == [1, 3])
                for _ in range(100):
                    if not await outbox.depth("sale"):
                        break
                    await asyncio.sleep(0.05)
                assert await outbox.depth("sale") == 0
                [letter] = await outbox.dead_letters("sale")
                assert letter.payload["n"] == 2
                assert "over mqtt.max_message_bytes" in letter.reason
                assert service.connections == 1  # the broker never had to hang up on us
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await outbox.close()
                db.close()
    finally:
        broker.stop()


async def test_a_permanent_puback_refusal_is_dead_at_once_and_the_next_record_goes(tmp_path: Path) -> None:
    from agent.sync._client import PublishRefused
    from tests.integration.test_sync_uplink import ScriptedClient, settle_all, uplink
    from tests.unit.sync.memory_outbox import MemoryOutbox

    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    outbox = MemoryOutbox()
    await outbox.put("sale", {"n": 1})
    await outbox.put("sale", {"n": 2})
    up = uplink(outbox, db, batch_max=1, claim_limit=1)
    client = ScriptedClient()
    task = asyncio.create_task(up.run(client))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(client.wait_sent(1), 5)
        await settle_all(client.pending(), PublishRefused(0x99, "Payload format invalid"))
        await asyncio.wait_for(client.wait_sent(2), 5)  # not 30 s later: the head is gone
        assert outbox.dead == [(1, "sync: broker refused the publish: Payload format invalid (0x99)")]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        db.close()
