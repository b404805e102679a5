"""The example ACL (deploy/mosquitto/acl) loaded into a real Mosquitto: a device reaches only its
store's topics. Identity: username = store id, client id = `shopedge-{store}-{device}` (see the
ACL's header); two stores' devices with the same device id both stay connected."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import SyncService, down_filter, down_topic, status_topic, up_topic
from agent.sync._client import PublishRefused, SyncClient, Will, client_options
from base.health import Level
from base.mqtt import client_id_for
from offline_queue import Outbox
from tests.integration.sync_brokers import ACL_EXAMPLE, Broker, make_mosquitto
from tests.integration.sync_support import cloud_consumer, device_config

USERS = {"store-001": "pw-store-1", "store-002": "pw-store-2", "shopedge-cloud": "pw-cloud"}
CLOUD = {"username": "shopedge-cloud", "password": "pw-cloud"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = make_mosquitto(tmp_path / "acl", acl=ACL_EXAMPLE, users=USERS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def device(broker: Broker, tmp_path: Path, store: str, device_id: str) -> AsyncIterator[SyncClient]:
    config = device_config(broker, tmp_path, username=store, password=USERS[store])
    options = client_options(
        config.mqtt,
        client_id=client_id_for(config.mqtt, store, device_id),
        protocol="5",
        will=Will(topic=status_topic(store, device_id), payload=b'{"state":"offline"}'),
        connect_timeout=10,
    )
    async with SyncClient(**options) as client:
        yield client


async def test_device_reaches_only_its_own_topics(acl_broker: Broker, tmp_path: Path) -> None:
    async with (
        cloud_consumer(acl_broker, "shopedge/v1/#", **CLOUD) as cloud,
        device(acl_broker, tmp_path, "store-001", "counter-1") as a,
    ):
        # Its own uplink and status: accepted and delivered.
        await asyncio.wait_for(a.publish_qos1(up_topic("store-001", "counter-1", "sale"), b"mine"), 10)
        await asyncio.wait_for(a.publish_qos1(status_topic("store-001", "counter-1"), b"up", retain=True), 10)
        # The same device id in another store, or any other store's device: refused (0x87).
        for store, dev in (("store-002", "counter-1"), ("store-002", "counter-2")):
            with pytest.raises(PublishRefused) as refused:
                await asyncio.wait_for(a.publish_qos1(up_topic(store, dev, "sale"), b"forged"), 10)
            assert refused.value.code == 0x87
            with pytest.raises(PublishRefused):
                await asyncio.wait_for(a.publish_qos1(down_topic(store, dev, "command"), b"forged"), 10)
        # Subscribing to its own downlink is granted. Mosquitto 2.0 also grants a SUBSCRIBE to
        # another store's downlink or to everything, but its read ACL filters every delivery:
        # nothing of any other store reaches A, which is what the next lines check.
        granted = await a.subscribe(down_filter("store-001", "counter-1"), qos=1)
        assert not granted[0].is_failure  # type: ignore[union-attr]
        await a.subscribe(down_filter("store-002", "counter-1"), qos=1)
        await a.subscribe("shopedge/v1/#", qos=1)
        # The cloud sends to the other store's counter-1: A must not receive it; its own arrives.
        async with aiomqtt.Client(acl_broker.host, acl_broker.port, identifier="cloud-pub", **CLOUD) as pub:
            await pub.publish(down_topic("store-002", "counter-2", "command"), b"for-b", qos=1)
            await pub.publish(down_topic("store-002", "counter-1", "command"), b"for-other-store", qos=1)
            await pub.publish(down_topic("store-001", "counter-1", "command"), b"for-a", qos=1)
        got: list[tuple[str, bytes]] = []

        async def read() -> None:
            async for message in a.messages:
                got.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]
                if message.payload == b"for-a":
                    return

        await asyncio.wait_for(read(), 10)
        assert [p for _t, p in got] == [b"for-a"]
        await cloud.wait_for(lambda: any(p == b"mine" for _t, p, _r in cloud.messages))
    assert not any(p == b"forged" for _t, p, _r in cloud.messages)


async def test_wrong_password_is_refused(acl_broker: Broker, tmp_path: Path) -> None:
    config = device_config(acl_broker, tmp_path, username="store-001", password="nope")
    options = client_options(
        config.mqtt,
        client_id=client_id_for(config.mqtt, "store-001", "counter-1"),
        protocol="5",
        will=Will(topic=status_topic("store-001", "counter-1"), payload=b"x"),
        connect_timeout=10,
    )
    with pytest.raises(aiomqtt.MqttError):
        async with SyncClient(**options):
            pass


async def test_refused_credentials_turn_sync_health_red(acl_broker: Broker, tmp_path: Path) -> None:
    config = device_config(acl_broker, tmp_path, username="store-001", password="wrong")
    db = open_state_db(config.db_path)
    migrate(db)
    outbox = await Outbox.open(config.db_path)
    service = SyncService(AgentContext(config=config, db=db, services={"outbox": outbox}))
    task = asyncio.create_task(service.run())
    try:
        for _ in range(100):
            health = service.ctx.health.get("sync")
            if health is not None and health.level is Level.RED:
                break
            await asyncio.sleep(0.05)
        health = service.ctx.health.get("sync")
        assert health is not None and health.level is Level.RED and "credentials" in health.detail
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await outbox.close()
        db.close()


async def test_the_same_device_id_in_two_stores_both_stay_connected(
    acl_broker: Broker, tmp_path: Path
) -> None:
    """Issue 14, item 6: with the bare device id as client id, two stores' `counter-1` took the
    id from each other in a loop (each connect disconnected the other)."""
    services: list[SyncService] = []
    outboxes: list[Outbox] = []
    dbs = []
    for store in ("store-001", "store-002"):
        config = device_config(acl_broker, tmp_path / store, username=store, password=USERS[store])
        config = config.model_copy(
            update={"device": config.device.model_copy(update={"store_id": store, "device_id": "counter-1"})}
        )
        db = open_state_db(config.db_path)
        migrate(db)
        outbox = await Outbox.open(config.db_path)
        await outbox.put("sale", {"store": store})
        dbs.append(db)
        outboxes.append(outbox)
        services.append(SyncService(AgentContext(config=config, db=db, services={"outbox": outbox})))
    async with cloud_consumer(acl_broker, "shopedge/v1/+/+/up/#", **CLOUD) as cloud:
        tasks = [asyncio.create_task(service.run()) for service in services]
        try:
            await cloud.wait_for(lambda: len(cloud.envelopes("sale")) >= 2)
            await asyncio.sleep(3.0)  # a takeover loop reconnects within reconnect_max_s (1 s)
            assert [service.connections for service in services] == [1, 1]
            assert all(service.connected.is_set() for service in services)
            assert sorted(e["data"]["store"] for e in cloud.envelopes("sale")) == ["store-001", "store-002"]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for outbox in outboxes:
                await outbox.close()
            for db in dbs:
                db.close()


async def test_device_reads_its_stores_store_wide_downlink_and_no_other(
    acl_broker: Broker, tmp_path: Path
) -> None:
    """A beacon mapped to a store only (`relay.beacon_stores = {HWID = "STORE"}`) is published to
    `shopedge/v1/STORE/_store/down/line_event`: each device of that store must receive it."""
    async with device(acl_broker, tmp_path, "store-001", "counter-1") as a:
        granted = await a.subscribe("shopedge/v1/store-001/_store/down/+", qos=1)  # store_down_filter
        assert not granted[0].is_failure  # type: ignore[union-attr]
        await a.subscribe("shopedge/v1/store-002/_store/down/+", qos=1)
        async with aiomqtt.Client(acl_broker.host, acl_broker.port, identifier="cloud-pub", **CLOUD) as pub:
            await pub.publish("shopedge/v1/store-002/_store/down/line_event", b"other-store", qos=1)
            await pub.publish("shopedge/v1/store-001/_store/down/line_event", b"my-store", qos=1)
        got: list[bytes] = []

        async def read() -> None:
            async for message in a.messages:
                got.append(bytes(message.payload))  # type: ignore[arg-type]
                if message.payload == b"my-store":
                    return

        await asyncio.wait_for(read(), 10)
        assert got == [b"my-store"]
