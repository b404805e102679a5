"""Broker outage: stop Mosquitto for 60 s while the counter produces 100 events/s, start it again.

Every event must arrive, none lost, in order per stream; duplicates only for records that were
in flight when the connection dropped (the outbox could not know they arrived), which the
consumer removes by envelope id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import SyncService, decode_message
from base.health import Level
from offline_queue import Outbox
from tests.integration.sync_brokers import Broker, make_mosquitto
from tests.integration.sync_support import device_config

# The issue asks for 60 s; SHOPEDGE_TEST_OUTAGE_S shortens it for a quick local run.
OUTAGE_S = float(os.environ.get("SHOPEDGE_TEST_OUTAGE_S", "60"))
RATE = 100  # events per second, alternating between two streams
BEFORE_S = 5.0
AFTER_S = 5.0
CONSUMER_WINDOW = 20  # Mosquitto's max_inflight_messages default, per client
BIGGEST_MESSAGE = [0]  # most envelopes seen in one message


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = make_mosquitto(tmp_path / "mosq")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def consume(broker: Broker, received: list[tuple[str, dict[str, object]]], stop: asyncio.Event) -> None:
    """A cloud consumer with a persistent session that reconnects on its own."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client(
                broker.host, broker.port, identifier="cloud-outage", clean_session=False, timeout=5
            ) as client:
                await client.subscribe("shopedge/v1/+/+/up/+", qos=1)
                async for message in client.messages:
                    envelopes = decode_message(bytes(message.payload))  # type: ignore[arg-type]
                    BIGGEST_MESSAGE[0] = max(BIGGEST_MESSAGE[0], len(envelopes))
                    for envelope in envelopes:
                        received.append((envelope.kind, envelope.to_json()))
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_sixty_second_outage_loses_nothing(mosquitto_broker: Broker, tmp_path: Path) -> None:
    config = device_config(mosquitto_broker, tmp_path, reconnect_max_s=5.0)
    db = open_state_db(config.db_path)
    migrate(db)
    outbox = await Outbox.open(config.db_path)
    ctx = AgentContext(config=config, db=db, services={"outbox": outbox})
    service = SyncService(ctx)
    received: list[tuple[str, dict[str, object]]] = []
    stop = asyncio.Event()
    produced = {"sale": 0, "presence": 0}
    levels: list[Level] = []
    ctx.health.listen(lambda item: levels.append(item.level) if item.name == "sync" else None)

    async def produce(seconds: float) -> None:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * RATE)
            while n < due:
                stream = "sale" if n % 2 == 0 else "presence"
                produced[stream] += 1
                await outbox.put(stream, {"n": produced[stream]})
                n += 1
            await asyncio.sleep(0.01)

    consumer = asyncio.create_task(consume(mosquitto_broker, received, stop))
    device = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        await produce(BEFORE_S)
        await asyncio.to_thread(mosquitto_broker.stop)
        await produce(OUTAGE_S)
        assert not service.connected.is_set()
        assert ctx.health.get("sync").level is Level.AMBER  # type: ignore[union-attr]
        backlog = await outbox.depth()
        assert backlog >= OUTAGE_S * RATE * 0.9
        await asyncio.to_thread(mosquitto_broker.start)
        await produce(AFTER_S)
        total = sum(produced.values())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len({e["id"] for _k, e in received}) >= total and not await outbox.depth():
                break
            await asyncio.sleep(0.1)
    finally:
        device.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await device
        stop.set()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    assert total >= (BEFORE_S + OUTAGE_S + AFTER_S) * RATE * 0.95
    try:
        assert await outbox.depth() == 0, "everything was acknowledged by the broker"
    finally:
        await outbox.close()
        db.close()
    seen: set[object] = set()
    duplicates = 0
    for stream in ("sale", "presence"):
        first_seen: list[dict[str, object]] = []
        for kind, envelope in received:
            if kind != stream:
                continue
            if envelope["id"] in seen:
                duplicates += 1
                continue
            seen.add(envelope["id"])
            first_seen.append(envelope)
        assert [e["data"]["n"] for e in first_seen] == list(range(1, produced[stream] + 1)), stream  # type: ignore[index]
        assert [e["seq"] for e in first_seen] == list(range(1, produced[stream] + 1)), stream
    assert service.uplink is not None
    # Duplicates come only from two places the outbox cannot know about: records the device
    # sent again after the drop (stats.resent), and messages the broker redelivers to the
    # consumer's persistent session because the consumer's PUBACK was lost as the broker
    # stopped (at most Mosquitto's in-flight window of 20 messages, of up to BIGGEST envelopes).
    redelivery_bound = CONSUMER_WINDOW * BIGGEST_MESSAGE[0]
    assert duplicates <= service.uplink.stats.resent + redelivery_bound
    assert Level.AMBER in levels and ctx.health.get("sync").level is Level.GREEN  # type: ignore[union-attr]
    print(
        f"produced={total} received={len(received)} duplicates={duplicates} "
        f"resent={service.uplink.stats.resent} biggest_message={BIGGEST_MESSAGE[0]} "
        f"backlog_at_restart={backlog} connections={service.connections}"
    )
