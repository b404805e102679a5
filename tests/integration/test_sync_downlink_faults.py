"""The device's downlink under payloads nobody scripted, over real brokers (issue 14): a deeply
nested message is counted and dropped without ending the session, and a store-wide LINE event
(`shopedge/v1/{store}/_store/down/line_event`, what the relay sends for a beacon mapped to a
store only) reaches the device."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from agent.sync import down_topic, format_ts
from tests.integration.sync_brokers import Broker, broker_fixture  # noqa: F401
from tests.integration.sync_support import publish_down
from tests.integration.test_sync_broker import device, running


def envelope(data: dict[str, object]) -> bytes:
    body = {"id": str(uuid.uuid4()), "kind": "line_event", "ts": format_ts(1.7e9), "seq": 0, "data": data}
    return json.dumps(body).encode()


async def test_deep_payload_is_dropped_and_store_wide_events_arrive(broker: Broker, tmp_path: Path) -> None:
    async with device(broker, tmp_path) as (service, _outbox), running(service) as task:
        await asyncio.wait_for(service.connected.wait(), 15)
        store, device_id = "store-001", "counter-1"
        await publish_down(
            broker, down_topic(store, device_id, "line_event"), b"[" * 100_000 + b"]" * 100_000
        )
        await publish_down(
            broker, f"shopedge/v1/{store}/_store/down/line_event", envelope({"event": {"type": "beacon"}})
        )
        await publish_down(broker, "shopedge/v1/store-002/_store/down/line_event", envelope({"other": True}))
        await publish_down(
            broker, down_topic(store, device_id, "line_event"), envelope({"event": {"type": "message"}})
        )
        for _ in range(200):
            if service.inbox.qsize() >= 2 and service.down.malformed:
                break
            await asyncio.sleep(0.05)
        assert service.down.malformed == 1
        assert service.inbox.qsize() == 2  # the store-wide beacon and the device's own event
        assert not task.done() and service.connections == 1  # the session never ended
