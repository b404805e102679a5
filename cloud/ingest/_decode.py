"""What one received MQTT message means to the fleet database; pure functions, no I/O.

`read_message` turns (topic, payload) into exactly one of: envelopes to store, a device status
to apply, a quarantine entry (with the reason), or nothing (a cleared retained status). It
never raises for bad input: a malformed message is data for the quarantine table, not an
error that stops the worker. `facts_of` reads the funnel facts out of one stored envelope.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import orjson

from base.envelope import MalformedMessage, decode_objects, parse_ts
from base.topics import TopicError, parse_topic

__all__ = [
    "DaySummary",
    "Fact",
    "Quarantined",
    "Read",
    "StatusUpdate",
    "StoredEnvelope",
    "day_summary_of",
    "facts_of",
    "read_message",
]


class StoredEnvelope(NamedTuple):
    """One envelope as a row of `envelopes` (a named tuple: a worker makes tens of thousands a
    second, at a fifth of a frozen dataclass's cost)."""

    id: str
    store_id: str
    device_id: str
    stream: str
    seq: int
    ts: float
    data: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class StatusUpdate:
    """A device's retained status (`online` on connect, `offline` from its will or goodbye)."""

    store_id: str
    device_id: str
    online: bool
    ts: float
    agent_version: str | None
    protocol: str | None


@dataclass(frozen=True, kw_only=True)
class Quarantined:
    topic: str
    payload: bytes
    reason: str
    store_id: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Read:
    """The meaning of one message; at most one of the fields is set (none: nothing to store)."""

    envelopes: tuple[StoredEnvelope, ...] = ()
    status: StatusUpdate | None = None
    quarantined: Quarantined | None = None


def read_message(topic: str, payload: bytes) -> Read:
    try:
        ref = parse_topic(topic)
    except TopicError as exc:
        return Read(quarantined=Quarantined(topic=topic, payload=payload, reason=str(exc)))
    where = {"store_id": ref.store_id, "device_id": ref.device_id}
    if ref.direction == "status":
        if not payload:
            return Read()  # a retained status being cleared
        try:
            return Read(status=_status(ref.store_id, ref.device_id, payload))
        except MalformedMessage as exc:
            return Read(
                quarantined=Quarantined(topic=topic, payload=payload, reason=f"status: {exc}", **where)
            )
    if ref.direction != "up" or ref.kind is None:
        return Read(
            quarantined=Quarantined(topic=topic, payload=payload, reason="not an uplink topic", **where)
        )
    try:
        # orjson: the same refusals as the standard decoder (invalid UTF-8, NaN, Infinity), at
        # twice its speed; an integer past 64 bits becomes a float (a `seq` so large is refused).
        objects = decode_objects(payload, loads=orjson.loads)
    except MalformedMessage as exc:
        return Read(quarantined=Quarantined(topic=topic, payload=payload, reason=str(exc), **where))
    kind = ref.kind
    wrong = [obj["kind"] for obj, _ in objects if obj["kind"] != kind]
    if wrong:
        reason = f"envelope kind {wrong[0]!r} on the {kind!r} topic"
        return Read(quarantined=Quarantined(topic=topic, payload=payload, reason=reason, **where))
    store_id, device_id = ref.store_id, ref.device_id
    return Read(
        envelopes=tuple(
            StoredEnvelope(obj["id"], store_id, device_id, kind, obj["seq"], epoch, obj["data"])
            for obj, epoch in objects
        )
    )


def _status(store_id: str, device_id: str, payload: bytes) -> StatusUpdate:
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedMessage("must be a JSON object")
    state = body.get("state")
    if state not in ("online", "offline"):
        raise MalformedMessage(f"state must be 'online' or 'offline', got {state!r}")
    for key, expected in (("store_id", store_id), ("device_id", device_id)):
        if key in body and body[key] != expected:
            raise MalformedMessage(f"{key} {body[key]!r} does not match the topic's {expected!r}")
    ts = body.get("ts")
    if not isinstance(ts, str):
        raise MalformedMessage(f"ts must be an RFC 3339 string, got {ts!r}")
    return StatusUpdate(
        store_id=store_id,
        device_id=device_id,
        online=state == "online",
        ts=parse_ts(ts),
        agent_version=_text(body.get("agent_version")),
        protocol=_text(body.get("protocol")),
    )


def _text(value: Any) -> str | None:
    return str(value)[:64] if isinstance(value, str | int | float) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- funnel facts


@dataclass(frozen=True, kw_only=True)
class Fact:
    """One funnel fact from a live event (the device's `FactKind` vocabulary)."""

    kind: str
    store_id: str
    device_id: str
    at: float
    envelope_id: str
    order_id: str | None = None
    line_user_id: str | None = None
    amount_twd: int | None = None
    campaign: str | None = None

    @property
    def key(self) -> str:
        parts = (self.kind, self.store_id, self.device_id, self.order_id, self.line_user_id, self.campaign)
        return ":".join(part or "" for part in parts)[:255]


_COUPON_EVENTS = {"replied": "coupon_replied", "pushed": "coupon_pushed", "redeemed": "coupon_redeemed"}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def facts_of(envelope: StoredEnvelope) -> list[Fact]:
    """The funnel facts one envelope states (none for streams that state none).

    - payment: a journal snapshot whose state is `paid` is one payment (amount = paid_amount);
    - conversion: a bound member, and a new friend when `is_new_follower`;
    - coupon_push: `{"event": "replied"|"pushed"|"redeemed", "campaign", "line_user_id"}`.
    Unknown shapes give no fact (the envelope itself is still stored).
    """
    data = envelope.data
    fact = functools.partial(
        Fact, store_id=envelope.store_id, device_id=envelope.device_id, envelope_id=envelope.id
    )
    if envelope.stream == "payment":
        if data.get("state") != "paid":
            return []
        order = _str(data.get("line_order_id")) or _str(data.get("order_id"))
        amount = _int(data.get("paid_amount")) or _int(data.get("amount"))
        if order is None or amount is None or amount < 0:
            return []
        at = _number(data.get("created_at")) or envelope.ts
        return [fact(kind="payment", at=at, order_id=order, amount_twd=amount)]
    if envelope.stream == "conversion":
        order = _str(data.get("order_id"))
        user = _str(data.get("line_user_id"))
        if order is None or user is None:
            return []
        at = _number(data.get("converted_at")) or envelope.ts
        amount = _int(data.get("amount_twd"))
        facts = [
            fact(kind="binding_message", at=at, order_id=order, line_user_id=user),
            fact(kind="bound_member", at=at, order_id=order, line_user_id=user, amount_twd=amount),
        ]
        if data.get("is_new_follower") is True:
            facts.append(fact(kind="new_friend", at=at, order_id=order, line_user_id=user))
        return facts
    if envelope.stream == "coupon_push":
        kind = _COUPON_EVENTS.get(str(data.get("event")))
        user = _str(data.get("line_user_id"))
        if kind is None or user is None:
            return []
        at = _number(data.get("at")) or envelope.ts
        return [fact(kind=kind, at=at, line_user_id=user, campaign=_str(data.get("campaign")))]
    return []


@dataclass(frozen=True, kw_only=True)
class DaySummary:
    """A device's own funnel figures for one closed day (`funnel` stream, `daily_summary`)."""

    store_id: str
    device_id: str
    day: str
    envelope_id: str
    counts: Mapping[str, float]


DAY_COUNTS = (
    "payments",
    "payments_twd",
    "binding_qr_shown",
    "binding_messages",
    "new_friends",
    "bound_members",
    "coupons_replied",
    "coupons_pushed",
    "coupons_redeemed",
    "linepay_fee_twd",
    "message_cost_twd",
)


def day_summary_of(envelope: StoredEnvelope) -> DaySummary | None:
    data = envelope.data
    if envelope.stream != "funnel" or data.get("type") != "daily_summary":
        return None
    day = data.get("day")
    try:
        date.fromisoformat(str(day))
    except ValueError:
        return None
    counts = {name: _number(data.get(name)) or 0.0 for name in DAY_COUNTS}
    return DaySummary(
        store_id=envelope.store_id,
        device_id=envelope.device_id,
        day=str(day),
        envelope_id=envelope.id,
        counts=counts,
    )
