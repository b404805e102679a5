"""The example ACL (deploy/mosquitto/acl) loaded into a real Mosquitto: a device reaches only its
own topics. Identity: username = store id, client id = device id (see the ACL's header)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from agent.context import AgentContext
from agent.db import migrate, open_engine
from agent.sync import SyncService, down_filter, down_topic, status_topic, up_topic
from agent.sync._client import PublishRefused, SyncClient, Will, client_options
from base.health import Level
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
        client_id=device_id,
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
        # Another device of its store, and the same device id in another store: refused (0x87).
        for store, dev in (("store-001", "counter-2"), ("store-002", "counter-1")):
            with pytest.raises(PublishRefused) as refused:
                await asyncio.wait_for(a.publish_qos1(up_topic(store, dev, "sale"), b"forged"), 10)
            assert refused.value.code == 0x87
            with pytest.raises(PublishRefused):
                await asyncio.wait_for(a.publish_qos1(down_topic(store, dev, "command"), b"forged"), 10)
        # Subscribing to its own downlink is granted. Mosquitto 2.0 also grants a SUBSCRIBE to
        # B's downlink or to everything, but its read ACL filters every delivery: nothing of
        # B's (nor of any other store) reaches A, which is what the next lines check.
        granted = await a.subscribe(down_filter("store-001", "counter-1"), qos=1)
        assert not granted[0].is_failure  # type: ignore[union-attr]
        await a.subscribe(down_filter("store-001", "counter-2"), qos=1)
        await a.subscribe("shopedge/v1/#", qos=1)
        # The cloud sends to device B: A must not receive it; its own downlink does arrive.
        async with aiomqtt.Client(acl_broker.host, acl_broker.port, identifier="cloud-pub", **CLOUD) as pub:
            await pub.publish(down_topic("store-001", "counter-2", "command"), b"for-b", qos=1)
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
        client_id="counter-1",
        protocol="5",
        will=Will(topic=status_topic("store-001", "counter-1"), payload=b"x"),
        connect_timeout=10,
    )
    with pytest.raises(aiomqtt.MqttError):
        async with SyncClient(**options):
            pass


async def test_refused_credentials_turn_sync_health_red(acl_broker: Broker, tmp_path: Path) -> None:
    config = device_config(acl_broker, tmp_path, username="store-001", password="wrong")
    engine = open_engine(config.db_path)
    migrate(engine)
    outbox = await Outbox.open(config.db_path)
    service = SyncService(AgentContext(config=config, engine=engine, services={"outbox": outbox}))
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
        engine.dispose()


async def test_device_reads_its_stores_store_wide_downlink_and_no_other(acl_broker: Broker, tmp_path: Path) -> None:
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
