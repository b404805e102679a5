"""Cloud consumers sharing the load with `$share/<group>/...`: each uplink message goes to one
worker of a group, and every group gets its own copy (the README's fleet recipe)."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt

from agent.sync import up_topic
from tests.integration.sync_brokers import Broker, mosquitto_fixture  # noqa: F401

FILTER = "shopedge/v1/+/+/up/+"


async def test_shared_group_splits_messages_between_workers(mosquitto: Broker) -> None:
    got: dict[str, list[bytes]] = {"w1": [], "w2": [], "analytics": []}
    ready = asyncio.Event()
    subscribed = 0

    async def worker(name: str, group: str) -> None:
        nonlocal subscribed
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"cloud-{name}") as client:
            await client.subscribe(f"$share/{group}/{FILTER}", qos=1)
            subscribed += 1
            if subscribed == 3:
                ready.set()
            async for message in client.messages:
                got[name].append(bytes(message.payload))  # type: ignore[arg-type]

    tasks = [
        asyncio.create_task(worker("w1", "ingest")),
        asyncio.create_task(worker("w2", "ingest")),
        asyncio.create_task(worker("analytics", "analytics")),
    ]
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="counter-x") as device:
            for n in range(200):
                await device.publish(up_topic("s1", f"d{n % 4}", "sale"), str(n).encode(), qos=1)
        for _ in range(200):
            if len(got["w1"]) + len(got["w2"]) >= 200 and len(got["analytics"]) >= 200:
                break
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    ingest = got["w1"] + got["w2"]
    assert sorted(ingest, key=int) == [str(n).encode() for n in range(200)], (
        "each message to one ingest worker"
    )
    assert got["w1"] and got["w2"], "both workers took a share"
    assert sorted(got["analytics"], key=int) == sorted(ingest, key=int), "another group gets its own copy"
