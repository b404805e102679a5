"""Helpers for the sync tests: a cloud-side MQTT consumer and the device config."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from agent.config import ShopEdgeConfig, parse_config
from agent.sync import decode_message
from tests.integration.sync_brokers import Broker


def device_config(
    broker: Broker, tmp_path: Path, *, connect_timeout: float = 10.0, **mqtt: Any
) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path / "state")},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
                **mqtt,
            },
            "timeouts": {"mqtt_connect": connect_timeout},
        },
        environ={},
    )


@dataclass
class Cloud:
    """What a cloud consumer received: raw payloads per topic, in arrival order."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def envelopes(self, kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for topic, payload, _retained in self.messages:
            if topic.endswith(f"/up/{kind}"):
                out.extend(e.to_json() for e in decode_message(payload))
        return out

    def statuses(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _r in self.messages if t.endswith("/status")]

    async def wait_for(self, predicate: Any, within: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), within)


@contextlib.asynccontextmanager
async def cloud_consumer(broker: Broker, topic: str = "shopedge/v1/#", **auth: Any) -> AsyncIterator[Cloud]:
    """A cloud subscriber (MQTT 3.1.1, so it works on both brokers) collecting messages."""
    cloud = Cloud()
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="cloud-test", timeout=10, **auth
    ) as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                cloud.messages.append((str(message.topic), payload, bool(message.retain)))
                cloud.changed.set()

        task = asyncio.create_task(collect())
        try:
            yield cloud
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def publish_down(broker: Broker, topic: str, payload: bytes, **auth: Any) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="cloud-pub", timeout=10, **auth) as client:
        await client.publish(topic, payload, qos=1)
