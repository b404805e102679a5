"""Demo step of the beacon greeting: a friend walks in and the counter greets them, free, by reply.

The Messaging emulator plays LINE: the shopper's phone "sees" the counter's beacon, so it sends
a signed `beacon` webhook whose `dm` is the counter's rotating code — computed by the emulator
on its own from the documented scheme (`counter_beacon_dm`), not by ShopEdge — to the relay,
which routes it by HWID to this counter over MQTT (or, with no broker, hands it to the agent's
downlink inbox as the relay would). The step checks where a shop would: one greeting delivered
by reply (no quota spent), and a second `enter` within the cool-down answered with nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.demo import DemoRun, DemoStepFailed

__all__ = ["step_friend_greeted"]

WAIT_S = 10.0

_SELECT_EVENT_REASON = "SELECT reason FROM beacon_events WHERE webhook_event_id = ?"


def _event_reason_blocking(run: DemoRun, event_id: str) -> str | None:
    with run.ctx.db.transaction() as conn:
        row = conn.execute(_SELECT_EVENT_REASON, (event_id,)).fetchone()
    return None if row is None else str(row[0])


async def _deliver(run: DemoRun, event: dict[str, Any]) -> None:
    """Through the relay and MQTT when there is a broker, else the relay hop in-process."""
    from agent.demo.conversion import _ensure_relay
    from emulators.messaging.webhooks import post_webhook

    if run.extras.get("broker") is False:
        from agent.sync import Envelope, accept_line_event
        from cloud.relay import envelope

        inbox, outbox = run.ctx.services.get("downlink"), run.ctx.services.get("outbox")
        if inbox is None or outbox is None:
            raise DemoStepFailed("the agent has no downlink inbox or outbox (sync not running)")
        body = envelope(
            event, destination="demo", now=run.ctx.wall_clock(), extra={"received_at": time.time()}
        )
        await accept_line_event(outbox, inbox, Envelope(**body))
        return
    status, text = await post_webhook(
        await _ensure_relay(run),
        [event],
        channel_secret=run.config.line.channel_secret.get_secret_value(),
        timeout_s=run.config.timeouts.line_api,
    )
    if status != 200:
        raise DemoStepFailed(f"relay answered {status}: {text[:100]}")


async def _handled(run: DemoRun, event_id: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        reason = await asyncio.to_thread(_event_reason_blocking, run, event_id)
        if reason is not None:
            return reason
        await asyncio.sleep(0.1)
    raise DemoStepFailed(f"the counter did not handle beacon event {event_id} within {WAIT_S:.0f} s")


async def step_friend_greeted(run: DemoRun) -> str:
    from agent.demo.coupons import _emulator
    from emulators.messaging.webhooks import beacon_event, counter_beacon_dm, new_user_id

    config = run.config
    hwid = config.beacon.hwid
    if not hwid or not config.greetings:
        raise DemoStepFailed("the demo config has no [beacon] hwid or [[greetings]]")
    emulator = await _emulator(run)
    user = new_user_id()
    key = config.binding.key.get_secret_value()
    usage = emulator.total_usage

    def walk_in() -> dict[str, Any]:
        return beacon_event(
            user,
            hwid,
            dm=counter_beacon_dm(key, hwid, time.time()),
            reply_token=emulator.issue_reply_token(user),
        )

    first = walk_in()
    await _deliver(run, first)
    reason = await _handled(run, first["webhookEventId"])
    greeted = emulator.deliveries_to(user)
    if reason != "greet" or [d.via for d in greeted] != ["reply"]:
        raise DemoStepFailed(f"expected one greeting by reply, got {reason} and {[d.via for d in greeted]}")
    text = str(greeted[0].messages[0].get("text", "")).split("\n")[0]
    second = walk_in()
    await _deliver(run, second)
    again = await _handled(run, second["webhookEventId"])
    if again != "cooldown" or len(emulator.deliveries_to(user)) != 1:
        raise DemoStepFailed(
            f"a second enter within the cool-down was {again}, sent {emulator.deliveries_to(user)}"
        )
    if emulator.total_usage != usage:
        raise DemoStepFailed("the greeting used the message quota; a reply should be free")
    via = "in-process relay hop (no broker)" if run.extras.get("broker") is False else "relay and MQTT"
    return (
        f"{user[:9]}… greeted by reply (free) with 「{text}」 via {via}; "
        f"a second enter within {config.greetings[0].cooldown_h:.0f} h got nothing"
    )
