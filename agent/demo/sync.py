"""The demo's sync step: the cloud sees the counter online, receives its events and gets an
answer to a downlink `ping` (through the demo's local broker)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import aiomqtt

from base.envelope import decode_message, format_ts
from base.topics import down_topic

if TYPE_CHECKING:
    from agent.demo import DemoRun

__all__ = ["step_cloud_sync"]


async def step_cloud_sync(run: DemoRun) -> str:
    """Waits (15 s at most) for the retained online status, an uplink event and a ping reply."""
    from agent.demo import DemoStepFailed

    if run.extras.get("broker") is False:
        return await _waiting_for_sync(run)
    device = run.config.device
    mqtt = run.config.mqtt
    base = f"shopedge/v1/{device.store_id}/{device.device_id}"
    seen: dict[str, Any] = {"kinds": set()}
    request_id = str(uuid.uuid4())
    ping = json.dumps(
        {
            "id": request_id,
            "kind": "command",
            "ts": format_ts(time.time()),
            "seq": 0,
            "data": {"name": "ping"},
        }
    )
    command_topic = down_topic(device.store_id, device.device_id, "command")
    try:
        async with aiomqtt.Client(
            mqtt.host, mqtt.port, identifier=f"demo-cloud-{uuid.uuid4().hex[:8]}", timeout=5
        ) as cloud:
            await cloud.subscribe(f"{base}/#", qos=1)
            await cloud.publish(command_topic, ping, qos=1)
            async with asyncio.timeout(15):
                async for message in cloud.messages:
                    topic = str(message.topic)
                    raw = message.payload
                    payload = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
                    if topic.endswith("/status"):
                        seen["status"] = json.loads(payload).get("state")
                    elif "/up/" in topic:
                        for envelope in decode_message(payload):
                            seen["kinds"].add(envelope.kind)
                            if envelope.kind == "reply" and envelope.data.get("request_id") == request_id:
                                seen["pong"] = envelope.data.get("detail")
                    if seen.get("status") == "online" and seen.get("pong") and len(seen["kinds"]) > 1:
                        break
    except (aiomqtt.MqttError, TimeoutError) as exc:
        problem = repr(exc) if str(exc) else "timed out after 15 s"
        if seen.get("status") != "online" or not seen.get("pong"):
            raise DemoStepFailed(
                f"cloud view of {base}: status={seen.get('status')}, kinds={sorted(seen['kinds'])}, "
                f"ping reply={seen.get('pong')} ({problem})"
            ) from None
    return (
        f"cloud sees {base} {seen['status']}; events on up/{', up/'.join(sorted(seen['kinds']))}; "
        f"ping answered {seen['pong']!r}"
    )


async def _waiting_for_sync(run: DemoRun) -> str:
    """No broker reachable: nothing is lost, the records wait in the outbox (and on the banner)."""
    from agent.demo import DemoStepFailed

    outbox = run.ctx.services.get("outbox")
    if outbox is None:
        raise DemoStepFailed("no outbox: records could not wait for sync")
    depth = await outbox.depth()
    health = run.ctx.health.get("sync")
    pending = getattr(run.ctx.services.get("display"), "pending_sync", None)
    if depth == 0:
        raise DemoStepFailed("no broker, yet no record waits in the outbox: something was dropped")
    state = f"{health.level}: {health.detail}" if health else "not reported"
    return f"no broker: {depth} records wait in the outbox for sync (display banner {pending}; sync {state})"
