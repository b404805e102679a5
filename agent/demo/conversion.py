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

from agent.demo import DemoRun, DemoStepFailed
from membership.binding import issue_binding

__all__ = ["STEPS", "step_shopper_joins"]

WAIT_S = 10.0

# The order's conversion in the agent's state DB (table from agent/migrations, 0500_conversion).
_SELECT_NEW_FOLLOWER = "SELECT is_new_follower FROM conversions WHERE order_id = ? LIMIT 1"


async def _ensure_relay(run: DemoRun) -> str:
    """The relay's webhook URL, starting the relay in this process the first time."""
    from cloud.relay import WEBHOOK_PATH, run_relay

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


def _conversion_row_blocking(run: DemoRun, order_id: str) -> bool | None:
    """Whether the order's shopper joined as a new friend; None while it has no conversion."""
    with run.ctx.db.transaction() as conn:
        row = conn.execute(_SELECT_NEW_FOLLOWER, (order_id,)).fetchone()
    return None if row is None else bool(row[0])


def _scan_screen_blocking(run: DemoRun) -> str | None:
    """What the shopper's phone reads off the customer display (its PNG copy): the binding URL."""
    import zxingcpp
    from PIL import Image

    path = run.config.display.png_path
    if path is None or not path.exists():
        return None
    with Image.open(path) as image:
        found = [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]
    return next((text for text in found if "oaMessage" in text or "liff.line.me" in text), None)


async def step_shopper_joins(run: DemoRun) -> str:
    """Scan the paid screen's binding QR, send the message, see the conversion in the DB and upstream."""
    from emulators.messaging.webhooks import follow_event, new_user_id, text_message_event

    config = run.config
    order_id = str(run.extras.get("order_id") or f"DEMO-{int(time.time())}")
    url = None
    deadline = time.monotonic() + 3  # the PNG copy follows the screen within a frame or two
    while url is None and time.monotonic() < deadline:
        url = await asyncio.to_thread(_scan_screen_blocking, run)
        if url is None:
            await asyncio.sleep(0.1)
    source = "scanned off the paid screen"
    if url is None:
        _, url = issue_binding(config, order_id, run.ctx.wall_clock())
        source = "issued for the order (no binding QR on screen)"
    text = urllib.parse.unquote(url.split("?", 1)[1]) if "oaMessage" in url else url.rsplit("t=", 1)[-1]
    user = new_user_id()
    run.extras["joined_user"] = user
    # with the Messaging emulator running, LINE's reply token is one it will honour
    emulator = run.extras.get("messaging")
    issue = getattr(emulator, "issue_reply_token", None)
    reply_token = issue(user) if callable(issue) else None
    events = [follow_event(user), text_message_event(user, text, reply_token=reply_token)]
    if run.extras.get("broker") is False:
        await _relay_in_process(run, events)
        new_follower = await _await_conversion(run, order_id)
        friend = "new friend" if new_follower else "returning friend"
        return (
            f"{user[:9]}… joined for {order_id} ({source}): {friend}, recorded; no broker, so the "
            "relay hop ran in-process and the record waits in the outbox for sync"
        )
    upstream = await _send_through_relay(run, events, order_id)
    new_follower = await _await_conversion(run, order_id)
    if not await upstream:
        raise DemoStepFailed(f"conversion of {order_id} recorded but not seen upstream")
    friend = "new friend" if new_follower else "returning friend"
    return f"{user[:9]}… joined for {order_id} ({source}): {friend}, recorded and upstream"


async def _relay_in_process(run: DemoRun, events: list[dict[str, Any]]) -> None:
    """No broker: route each event as the relay would and hand it to the agent's downlink inbox."""
    from agent.sync import Envelope, accept_line_event
    from cloud.relay import envelope

    inbox, outbox = run.ctx.services.get("downlink"), run.ctx.services.get("outbox")
    if inbox is None or outbox is None:
        raise DemoStepFailed("the agent has no downlink inbox or outbox (sync not running)")
    for event in events:
        if event.get("type") != "message":
            continue
        body = envelope(event, destination="demo", now=run.ctx.wall_clock(), extra={"new_follower": True})
        await accept_line_event(outbox, inbox, Envelope(**body))


async def _send_through_relay(
    run: DemoRun, events: list[dict[str, Any]], order_id: str
) -> asyncio.Future[bool]:
    """POST the signed webhook to the relay; the future tells whether the cloud saw the conversion."""
    import aiomqtt

    from emulators.messaging.webhooks import post_webhook

    config = run.config
    relay_url = await _ensure_relay(run)
    up_topic = f"shopedge/v1/{config.device.store_id}/{config.device.device_id}/up/conversion"
    crm = aiomqtt.Client(
        config.mqtt.host,
        config.mqtt.port,
        identifier=f"demo-crm-{order_id[-8:]}",
        timeout=config.timeouts.mqtt_connect,
    )
    await crm.__aenter__()
    await crm.subscribe(up_topic, qos=1)
    status, body = await post_webhook(
        relay_url,
        events,
        channel_secret=config.line.channel_secret.get_secret_value(),
        timeout_s=config.timeouts.line_api,
    )
    if status != 200:
        await crm.__aexit__(None, None, None)
        raise DemoStepFailed(f"relay answered {status}: {body[:100]}")

    async def seen_upstream() -> bool:
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT_S):
                    async for message in crm.messages:
                        payload = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        envelopes = payload if isinstance(payload, list) else [payload]
                        if any(e.get("data", {}).get("order_id") == order_id for e in envelopes):
                            return True
            return False
        finally:
            await crm.__aexit__(None, None, None)

    return asyncio.ensure_future(seen_upstream())


async def _await_conversion(run: DemoRun, order_id: str) -> bool:
    """Wait for the order's conversion; whether its shopper is a new friend."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        new_follower = await asyncio.to_thread(_conversion_row_blocking, run, order_id)
        if new_follower is not None:
            return new_follower
        await asyncio.sleep(0.1)
    raise DemoStepFailed(
        f"no conversion for {order_id} within {WAIT_S:.0f} s: is the agent's MQTT downlink "
        f"(agent/sync) connected to {run.config.mqtt.host}:{run.config.mqtt.port}?"
    )


STEPS = [("shopper joins via the binding QR", step_shopper_joins)]
