"""LINE webhook deliveries as LINE makes them: event bodies, the signature, the POST.

Owns building webhook events (follow, unfollow, text message, beacon, account link) in the
shape of LINE's webhook schema (webhookEventId, deliveryContext.isRedelivery, replyToken,
millisecond timestamps, user source), serialising a batch, signing it with the channel secret
(`X-Line-Signature` = base64 HMAC-SHA256 of the raw body) and POSTing it to a relay URL.

Event builders are pure: ids and times are arguments with generated defaults, so a test can
replay the exact same event as a redelivery (`redelivered`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp

__all__ = [
    "account_link_event",
    "beacon_event",
    "counter_beacon_dm",
    "follow_event",
    "new_user_id",
    "post_webhook",
    "redelivered",
    "sign",
    "text_message_event",
    "unfollow_event",
    "webhook_body",
    "webhook_event_id",
]

Event = dict[str, Any]
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def webhook_event_id(now_ms: int | None = None) -> str:
    """A ULID, the format LINE uses for webhookEventId (26 characters, time-ordered)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> (5 * (25 - i))) & 31] for i in range(26))


def new_user_id() -> str:
    """A LINE user id: "U" and 32 hex digits."""
    return "U" + secrets.token_hex(16)


def _base(
    kind: str,
    user_id: str,
    *,
    timestamp_ms: int | None,
    event_id: str | None,
    reply_token: str | Literal[False] | None,
) -> Event:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    event: Event = {
        "type": kind,
        "mode": "active",
        "timestamp": ts,
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": event_id or webhook_event_id(ts),
        "deliveryContext": {"isRedelivery": False},
    }
    if reply_token is not False:
        event["replyToken"] = reply_token or secrets.token_hex(16)
    return event


def follow_event(
    user_id: str,
    *,
    is_unblocked: bool = False,
    timestamp_ms: int | None = None,
    event_id: str | None = None,
    reply_token: str | None = None,
) -> Event:
    """The shopper added the account (`is_unblocked`: they had blocked it before)."""
    event = _base("follow", user_id, timestamp_ms=timestamp_ms, event_id=event_id, reply_token=reply_token)
    event["follow"] = {"isUnblocked": is_unblocked}
    return event


def unfollow_event(user_id: str, *, timestamp_ms: int | None = None, event_id: str | None = None) -> Event:
    """The shopper blocked the account (no reply token: nobody to reply to)."""
    return _base("unfollow", user_id, timestamp_ms=timestamp_ms, event_id=event_id, reply_token=False)


def text_message_event(
    user_id: str,
    text: str,
    *,
    timestamp_ms: int | None = None,
    event_id: str | None = None,
    reply_token: str | None = None,
    message_id: str | None = None,
) -> Event:
    """The shopper sent a text message (the binding message is one)."""
    if not 1 <= len(text) <= 5000:
        raise ValueError("a LINE text message has 1 to 5000 characters")
    event = _base("message", user_id, timestamp_ms=timestamp_ms, event_id=event_id, reply_token=reply_token)
    event["message"] = {
        "type": "text",
        "id": message_id or str(secrets.randbelow(10**17) + 10**17),
        "quoteToken": secrets.token_urlsafe(48),
        "text": text,
    }
    return event


def beacon_event(
    user_id: str,
    hwid: str,
    *,
    beacon_type: Literal["enter", "banner", "stay"] = "enter",
    dm: str | None = None,
    timestamp_ms: int | None = None,
    event_id: str | None = None,
    reply_token: str | None = None,
) -> Event:
    """The shopper's phone heard a LINE Beacon (HWID: 10 hex digits; dm: hex device message)."""
    if len(hwid) != 10 or any(ch not in "0123456789abcdef" for ch in hwid):
        raise ValueError(f"hwid must be 10 lower-case hex digits, got {hwid!r}")
    event = _base("beacon", user_id, timestamp_ms=timestamp_ms, event_id=event_id, reply_token=reply_token)
    event["beacon"] = {"hwid": hwid, "type": beacon_type}
    if dm is not None:
        event["beacon"]["dm"] = dm
    return event


def counter_beacon_dm(binding_key: str, hwid: str, unix_seconds: float) -> str:
    """The device message a ShopEdge counter's beacon advertises at `unix_seconds`, computed from
    the documented scheme (docs/beacon-greeting.md) without importing ShopEdge: hex of
    HMAC-SHA256(key, b"shopedge-beacon-v1" + HWID bytes + slot as 8 bytes big-endian)[:8],
    slot = floor(unix_seconds / 300). What a phone in the shop would hand LINE as `dm`."""
    slot = int(unix_seconds // 300)
    message = b"shopedge-beacon-v1" + bytes.fromhex(hwid) + slot.to_bytes(8, "big")
    return hmac.new(binding_key.encode(), message, hashlib.sha256).digest()[:8].hex()


def account_link_event(
    user_id: str,
    nonce: str,
    *,
    ok: bool = True,
    timestamp_ms: int | None = None,
    event_id: str | None = None,
) -> Event:
    """The result of LINE's account-link flow (no reply token when it failed)."""
    reply: Literal[False] | None = None if ok else False
    event = _base("accountLink", user_id, timestamp_ms=timestamp_ms, event_id=event_id, reply_token=reply)
    event["link"] = {"result": "ok" if ok else "failed", "nonce": nonce}
    return event


def redelivered(event: Event) -> Event:
    """The same event as LINE redelivers it: same webhookEventId, `isRedelivery` true."""
    return {**event, "deliveryContext": {"isRedelivery": True}}


def webhook_body(events: Sequence[Event], destination: str) -> str:
    """The raw body LINE POSTs: the bot's user id as `destination`, then the events."""
    return json.dumps({"destination": destination, "events": list(events)}, ensure_ascii=False)


def sign(body: str, channel_secret: str) -> str:
    """`X-Line-Signature`: base64 of HMAC-SHA256 over the raw body with the channel secret."""
    digest = hmac.new(channel_secret.encode(), body.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def post_webhook(
    url: str,
    events: Sequence[Event],
    *,
    channel_secret: str,
    destination: str = "U" + "0" * 32,
    signature: str | None = None,
    timeout_s: float = 10.0,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, str]:
    """POST one signed webhook delivery; returns (HTTP status, response text).

    `signature` overrides the computed one (to test that a relay rejects forgeries).
    """
    body = webhook_body(events, destination)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Line-Signature": signature if signature is not None else sign(body, channel_secret),
        "User-Agent": "LineBotWebhook/2.0",
    }
    client_timeout = aiohttp.ClientTimeout(total=timeout_s)
    own = session is None
    http = aiohttp.ClientSession(timeout=client_timeout) if own else session
    assert http is not None
    try:
        async with http.post(url, data=body.encode(), headers=headers, timeout=client_timeout) as response:
            return response.status, await response.text()
    finally:
        if own:
            await http.close()
