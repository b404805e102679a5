"""Demo steps of the friend conversion: the shopper scans the binding QR and sends the message.

`step_shopper_joins` starts the webhook relay in-process (as the merchant's cloud would run it),
has the Messaging emulator deliver the shopper's follow and pre-filled message, signed, to the
relay, and checks the result where a merchant would see it: one conversion in the agent's DB
and its record upstream on `shopedge/v1/{store}/{device}/up/conversion`. It needs the MQTT
broker of the demo config and the agent's sync (downlink consumer and uplink) running.

The order is `run.extras["order_id"]` when an earlier step took a payment, else a demo order.
When the Messaging emulator runs (`run.extras["messaging"]`), the shopper's reply token comes
from it, so the agent's welcome coupon goes out by reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from typing import Any

from sqlalchemy import select

from agent.binding import URL_PROMPT, issue_binding
from agent.conversion import conversions
from agent.demo import DemoRun, DemoStepFailed

__all__ = ["STEPS", "step_shopper_joins"]

WAIT_S = 10.0


async def _ensure_relay(run: DemoRun) -> str:
    """The relay's webhook URL, starting the relay in this process the first time."""
    from agent.relay import WEBHOOK_PATH, run_relay

    if "relay_url" in run.extras:
        return str(run.extras["relay_url"])
    started = asyncio.Event()
    run.extras["relay_task"] = asyncio.create_task(
        run_relay(run.config, started=started), name="shopedge.demo.relay"
    )
    try:
        await asyncio.wait_for(started.wait(), WAIT_S)
    except TimeoutError:
        raise DemoStepFailed(f"relay did not start on {run.config.relay.listen}") from None
    run.extras["relay_url"] = f"http://{run.config.relay.listen}{WEBHOOK_PATH}"
    return str(run.extras["relay_url"])


def _conversion_row_blocking(run: DemoRun, order_id: str) -> Any:
    with run.ctx.engine.connect() as conn:
        return conn.execute(select(conversions).where(conversions.c.order_id == order_id)).first()


async def step_shopper_joins(run: DemoRun) -> str:
    """Scan, send, and see the conversion in the DB and upstream."""
    import aiomqtt

    from emulators.messaging.webhooks import follow_event, new_user_id, post_webhook, text_message_event

    config = run.config
    order_id = str(run.extras.get("order_id") or f"DEMO-{int(time.time())}")
    token, url = issue_binding(config, order_id, run.ctx.wall_clock())
    text = urllib.parse.unquote(url.split("?", 1)[1]) if "oaMessage" in url else URL_PROMPT + token
    relay_url = await _ensure_relay(run)
    up_topic = f"shopedge/v1/{config.device.store_id}/{config.device.device_id}/up/conversion"
    user = new_user_id()
    async with aiomqtt.Client(
        config.mqtt.host,
        config.mqtt.port,
        identifier=f"demo-crm-{user[1:9]}",
        timeout=config.timeouts.mqtt_connect,
    ) as crm:
        await crm.subscribe(up_topic, qos=1)
        # with the Messaging emulator running, LINE's reply token is one it will honour
        emulator = run.extras.get("messaging")
        issue = getattr(emulator, "issue_reply_token", None)
        reply_token = issue(user) if callable(issue) else None
        status, body = await post_webhook(
            relay_url,
            [follow_event(user), text_message_event(user, text, reply_token=reply_token)],
            channel_secret=config.line.channel_secret.get_secret_value(),
            timeout_s=config.timeouts.line_api,
        )
        if status != 200:
            raise DemoStepFailed(f"relay answered {status}: {body[:100]}")
        deadline = time.monotonic() + WAIT_S
        row = None
        while row is None and time.monotonic() < deadline:
            row = await asyncio.to_thread(_conversion_row_blocking, run, order_id)
            if row is None:
                await asyncio.sleep(0.1)
        if row is None:
            raise DemoStepFailed(
                f"no conversion for {order_id} within {WAIT_S:.0f} s: is the agent's MQTT downlink "
                f"(agent/sync) connected to {config.mqtt.host}:{config.mqtt.port}?"
            )
        upstream = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                async for message in crm.messages:
                    payload = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    envelopes = payload if isinstance(payload, list) else [payload]
                    upstream = next(
                        (e for e in envelopes if e.get("data", {}).get("order_id") == order_id), None
                    )
                    if upstream is not None:
                        break
        if upstream is None:
            raise DemoStepFailed(f"conversion of {order_id} recorded but not seen upstream on {up_topic}")
    friend = "new friend" if row.is_new_follower else "returning friend"
    return f"{user[:9]}… sent the binding message for {order_id}: {friend}, recorded and upstream"


STEPS = [("shopper joins via the binding QR", step_shopper_joins)]
