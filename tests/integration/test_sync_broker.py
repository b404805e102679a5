"""Sync against real brokers over TCP: Mosquitto and NATS (MQTT listener + JetStream).

The same tests run unchanged on both engines (the `broker` fixture is parametrised).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import SyncService, down_topic, format_ts
from base.health import Level
from offline_queue import Outbox
from tests.integration.sync_brokers import Broker, broker_fixture  # noqa: F401
from tests.integration.sync_support import cloud_consumer, device_config, publish_down
from tests.unit.sync.asyncapi import validate_message, validator


@contextlib.asynccontextmanager
async def running(service: SyncService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(service.run(), name="test.sync")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def device(brk: Broker, tmp_path: Path, **mqtt: object) -> AsyncIterator[tuple[SyncService, Outbox]]:
    """A sync service over the real outbox, in the device's state DB (as the daemon sets it up)."""
    config = device_config(brk, tmp_path, **mqtt)
    db = open_state_db(config.db_path)
    migrate(db)
    outbox = await Outbox.open(config.db_path)
    try:
        yield SyncService(AgentContext(config=config, db=db, services={"outbox": outbox})), outbox
    finally:
        await outbox.close()
        db.close()


async def test_uplink_delivers_every_stream_in_order_and_acks_after_puback(
    broker: Broker, tmp_path: Path
) -> None:
    async with device(broker, tmp_path) as (service, outbox):
        await produce_and_drain(broker, service, outbox)


async def produce_and_drain(broker: Broker, service: SyncService, outbox: Outbox) -> None:
    for i in range(300):
        await outbox.put("sale", {"n": i})
        if i % 3 == 0:
            await outbox.put("payment", {"n": i})
        if i % 10 == 0:
            await outbox.put("presence", {"n": i})
    async with cloud_consumer(broker) as cloud:
        async with running(service):
            await cloud.wait_for(lambda: len(cloud.envelopes("sale")) >= 300)
            await cloud.wait_for(
                lambda: len(cloud.envelopes("payment")) >= 100 and len(cloud.envelopes("presence")) >= 30
            )
            for _ in range(100):
                if not await outbox.depth():
                    break
                await asyncio.sleep(0.05)
            assert await outbox.depth() == 0
            assert service.ctx.health.get("sync").level is Level.GREEN  # type: ignore[union-attr]
        # Stopped cleanly: the agent itself publishes the retained offline status.
        await cloud.wait_for(lambda: cloud.statuses()[-1]["state"] == "offline", within=10)
    for kind, count in (("sale", 300), ("payment", 100), ("presence", 30)):
        got = cloud.envelopes(kind)
        assert [e["seq"] for e in got] == list(range(1, count + 1)), kind
        assert [e["data"]["n"] for e in got] == sorted(e["data"]["n"] for e in got)
        assert len({e["id"] for e in got}) == count
    for topic, payload, _ in cloud.messages:
        if "/up/" in topic:
            validate_message(payload)
    status = cloud.statuses()
    for body in status:
        validator("Status").validate(body)
    assert status[0]["state"] == "online" and status[0]["device_id"] == "counter-1"
    assert status[-1]["state"] == "offline"  # clean shutdown says so itself
    # With a backlog the uplink batched; nothing was acked in the outbox before its PUBACK.
    assert service.uplink is not None and service.uplink.stats.messages < 430


async def test_downlink_queued_while_offline_arrives_after_reconnect(broker: Broker, tmp_path: Path) -> None:
    async with device(broker, tmp_path) as (service, outbox):
        await downlink_after_reconnect(broker, service, outbox)


async def downlink_after_reconnect(broker: Broker, service: SyncService, outbox: Outbox) -> None:
    async with running(service):
        await asyncio.wait_for(service.connected.wait(), 15)
    # The device is away; the cloud sends a config change, a command, junk and an unknown kind.
    store, device = "store-001", "counter-1"
    config_id, ping_id = str(uuid.uuid4()), str(uuid.uuid4())

    def env(kind: str, eid: str, data: dict[str, object]) -> bytes:
        return json.dumps({"id": eid, "kind": kind, "ts": format_ts(1.7e9), "seq": 0, "data": data}).encode()

    await publish_down(
        broker, down_topic(store, device, "config"), env("config", config_id, {"set": {"mqtt.batch_max": 7}})
    )
    await publish_down(
        broker, down_topic(store, device, "command"), env("command", ping_id, {"name": "ping"})
    )
    refused_id, resync_id, rotate_id, unknown_id = (str(uuid.uuid4()) for _ in range(4))
    await publish_down(
        broker, down_topic(store, device, "config"), env("config", refused_id, {"set": {"mqtt.host": "evil"}})
    )
    await publish_down(
        broker, down_topic(store, device, "command"), env("command", resync_id, {"name": "resync"})
    )
    await publish_down(
        broker, down_topic(store, device, "command"), env("command", rotate_id, {"name": "rotate_logs"})
    )
    await publish_down(
        broker, down_topic(store, device, "command"), env("command", unknown_id, {"name": "format_disk"})
    )
    await publish_down(broker, down_topic(store, device, "command"), b"{not json")
    await publish_down(broker, down_topic(store, device, "firmware"), env("firmware", str(uuid.uuid4()), {}))
    await publish_down(
        broker,
        down_topic(store, device, "line_event"),
        env("line_event", str(uuid.uuid4()), {"type": "message"}),
    )
    service2 = SyncService(service.ctx)
    async with cloud_consumer(broker, "shopedge/v1/+/+/up/reply") as cloud, running(service2):
        await cloud.wait_for(lambda: len(cloud.envelopes("reply")) >= 6)
        for _ in range(100):  # the junk and the LINE event may be handled after the last reply
            if service2.down.malformed and service2.down.unknown >= 2 and service2.inbox.qsize():
                break
            await asyncio.sleep(0.05)
        assert service2.down.malformed == 1
        assert service2.down.unknown == 2  # the firmware kind and the unknown command
    replies = {e["data"]["request_id"]: e["data"] for e in cloud.envelopes("reply")}
    for reply in replies.values():
        validator("ReplyData").validate(reply)
    assert replies[config_id]["ok"] is True
    assert replies[config_id]["result"]["effective"] == {"mqtt.batch_max": 7}  # what the cloud reports
    assert replies[config_id]["result"]["agent_version"]
    assert replies[ping_id]["detail"] == "pong"
    assert replies[refused_id]["ok"] is False and "mqtt.host" in replies[refused_id]["detail"]
    assert replies[resync_id]["ok"] is True and "last_seq" in replies[resync_id]["result"]
    assert replies[rotate_id]["ok"] is True
    assert replies[unknown_id]["ok"] is False and "format_disk" in replies[unknown_id]["detail"]
    assert service2.live.config.mqtt.batch_max == 7
    assert service2.inbox.qsize() == 1
    # The change was persisted: a fresh service on the same DB starts with it.
    service3 = SyncService(
        AgentContext(config=service.ctx.config, db=service.ctx.db, services={"outbox": outbox})
    )
    await service3._load_live_config()
    assert service3.live.config.mqtt.batch_max == 7


async def test_reconnects_after_a_broker_restart_and_drains(broker: Broker, tmp_path: Path) -> None:
    async with device(broker, tmp_path) as (service, outbox), running(service) as task:
        await asyncio.wait_for(service.connected.wait(), 15)
        await asyncio.to_thread(broker.stop)
        for n in range(50):
            await outbox.put("sale", {"n": n})
        for _ in range(100):
            if not service.connected.is_set():
                break
            await asyncio.sleep(0.05)
        assert service.ctx.health.get("sync").level is Level.AMBER  # type: ignore[union-attr]
        await asyncio.to_thread(broker.start)
        for _ in range(300):
            if not await outbox.depth() and service.connected.is_set():
                break
            await asyncio.sleep(0.05)
        assert not task.done(), "the service keeps running across reconnects"
        assert await outbox.depth() == 0
        assert service.connections == 2
        assert service.ctx.health.get("sync").level is Level.GREEN  # type: ignore[union-attr]
