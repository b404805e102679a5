"""End to end through real sockets: the shopper's message leaves the Messaging emulator signed,
crosses the relay (real HTTP), Mosquitto (real MQTT, QoS 1) and reaches the device, whose
handler records one conversion in its state DB and queues it upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiomqtt

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from cloud.relay import device_topic
from emulators.messaging.webhooks import (
    follow_event,
    new_user_id,
    post_webhook,
    redelivered,
    text_message_event,
)
from membership.binding import issue_binding
from membership.conversion import ConversionResult, ConversionStatus, handle_line_event
from offline_queue import Outbox
from tests.integration._broker import mosquitto
from tests.integration.test_conversion import KEY, make_config
from tests.integration.test_relay import SECRET, relay_config, running_relay


async def test_shopper_message_becomes_one_conversion(tmp_path: Path) -> None:
    device = make_config()
    db = open_state_db(tmp_path / "state.db")
    await asyncio.to_thread(migrate, db)
    ctx = AgentContext(config=device, db=db)
    outbox = await Outbox.open(tmp_path / "state.db")
    ctx.services["outbox"] = outbox
    results: list[ConversionResult] = []
    handled = asyncio.Event()

    with mosquitto(tmp_path) as port:
        async with (
            aiomqtt.Client("127.0.0.1", port, identifier="counter-1") as client,
            running_relay(relay_config(port, tmp_path / "relay")) as relay_url,
        ):
            await client.subscribe(device_topic("demo-store", "counter-1"), qos=1)

            async def consume() -> None:  # stands in for agent/sync's downlink consumer
                async for message in client.messages:
                    envelope: dict[str, Any] = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    results.append(await handle_line_event(ctx, envelope["data"]))
                    handled.set()

            consumer = asyncio.create_task(consume())
            try:
                _, url = issue_binding(device, "A20261123-0042", ctx.wall_clock())
                text = url.split("?", 1)[1]
                user = new_user_id()
                message = text_message_event(user, unquote(text))
                status, _ = await post_webhook(
                    relay_url, [follow_event(user), message], channel_secret=SECRET
                )
                assert status == 200
                await asyncio.wait_for(handled.wait(), 5)
                handled.clear()
                status, _ = await post_webhook(relay_url, [redelivered(message)], channel_secret=SECRET)
                assert status == 200
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(handled.wait(), 0.5)
            finally:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer

    assert [r.status for r in results] == [ConversionStatus.RECORDED]  # the redelivery was dropped
    conversion = results[0].conversion
    assert conversion is not None and conversion.is_new_follower and conversion.line_user_id == user
    with db.transaction() as conn:
        stored = conn.execute("SELECT order_id, line_user_id FROM conversions").fetchall()
    assert [tuple(r) for r in stored] == [("A20261123-0042", user)]
    [record] = await outbox.claim("conversion")
    assert record.payload["order_id"] == "A20261123-0042" and record.payload["line_user_id"] == user
    assert KEY not in json.dumps(record.payload)
    await outbox.close()
    db.close()
