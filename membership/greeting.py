"""The beacon greeting's policy: what the counter does with one relayed `beacon` webhook event.

Owns parsing a relayed event into a `BeaconVisit` (or naming
why it is malformed), and `decide(visit, state, setup, now) -> Decision`: a pure function over
data, no I/O, no clock. The shell (`membership/greeter.py`) reads the state, performs the
decision and records the outcome.

The rules, in the order they are applied:

1. an event already handled (same `webhookEventId`) is REPLAYED;
2. a HWID that is not this counter's beacon is UNKNOWN_HWID;
3. no reply token: NO_REPLY_TOKEN (LINE always sends one with a beacon event; without it
   nothing can be answered for free and the event is suspect);
4. a `dm` that is not the rotating code of the current or previous slot is SPOOFED
   (`membership.beacon_code`);
5. `stay` and `banner` are recorded, never answered;
6. `enter` with no enabled greeting active today (for this HWID): recorded, nothing sent;
7. within `cooldown_h` of this shopper's last greeting at this store: recorded, nothing sent;
8. reply token still fresh: REPLY (free);
9. otherwise a paid PUSH only with `push_fallback = true` (the budget and quota are checked
   when the push is made); else recorded as a stale token.

Rules 1-4 are the bad input of the issue: counted, logged once, no message, no error upstream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from membership.beacon_code import Verdict, verify
from membership.config import GreetingConfig
from membership.event_time import EventTimeError, event_time

__all__ = [
    "EVENT_TYPES",
    "Action",
    "BeaconSetup",
    "BeaconVisit",
    "Decision",
    "GreetingConfig",
    "Malformed",
    "Reason",
    "ShopperState",
    "decide",
    "greeting_messages",
    "parse_beacon_event",
]

EVENT_TYPES = ("enter", "banner", "stay")
_HWID = re.compile(r"^[0-9a-f]{10}\Z")
_USER = re.compile(r"^U[0-9a-f]{32}\Z")
_DM_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){1,13}\Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class BeaconVisit:
    """A well-formed `beacon` webhook event as the relay forwarded it."""

    webhook_event_id: str
    line_user_id: str
    hwid: str  # 10 lower-case hex digits
    type: str  # enter | banner | stay
    dm: bytes | None  # None when LINE sent no dm
    reply_token: str | None
    received_at: float | None  # when the relay received it (wall clock), for the token's freshness
    sent_at: float | None  # LINE's event timestamp
    redelivery: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Malformed:
    """A `beacon` event that cannot be a visit; `why` says what is missing or wrong."""

    why: str
    webhook_event_id: str | None = None


def _unwrap(envelope_data: Mapping[str, Any]) -> Mapping[str, Any]:
    if "event" not in envelope_data and isinstance(envelope_data.get("data"), Mapping):
        return envelope_data["data"]  # type: ignore[no-any-return]  # a whole envelope
    return envelope_data


def parse_beacon_event(envelope_data: Mapping[str, Any]) -> BeaconVisit | Malformed | None:
    """The beacon visit in a relayed `line_event` envelope's data; None if it is not a `beacon`
    event at all (another handler's business), `Malformed` if it is one but unusable."""
    data = _unwrap(envelope_data)
    event = data.get("event")
    if not isinstance(event, Mapping) or event.get("type") != "beacon":
        return None
    raw_id = event.get("webhookEventId")
    event_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 64 else None
    if event_id is None:
        return Malformed(why="no webhookEventId")
    source = event.get("source")
    user = source.get("userId") if isinstance(source, Mapping) else None
    if not isinstance(user, str) or not _USER.match(user):
        return Malformed(why="no source.userId", webhook_event_id=event_id)
    beacon = event.get("beacon")
    if not isinstance(beacon, Mapping):
        return Malformed(why="no beacon object", webhook_event_id=event_id)
    hwid = beacon.get("hwid")
    if not isinstance(hwid, str) or not _HWID.match(hwid.lower()):
        return Malformed(why="beacon.hwid is not 10 hex digits", webhook_event_id=event_id)
    kind = beacon.get("type")
    if kind not in EVENT_TYPES:
        return Malformed(why=f"beacon.type is not one of {', '.join(EVENT_TYPES)}", webhook_event_id=event_id)
    dm_text = beacon.get("dm")
    dm: bytes | None = None
    if dm_text is not None:
        if not isinstance(dm_text, str) or not _DM_HEX.match(dm_text):
            return Malformed(why="beacon.dm is not 1-13 bytes of hex", webhook_event_id=event_id)
        dm = bytes.fromhex(dm_text)
    relay = data.get("relay")
    relay = relay if isinstance(relay, Mapping) else {}
    try:
        sent_at = event_time(event.get("timestamp"), field="timestamp", milliseconds=True)
        received_at = event_time(relay.get("received_at"), field="relay.received_at") or sent_at
    except EventTimeError as exc:
        return Malformed(why=str(exc), webhook_event_id=event_id)
    reply = event.get("replyToken")
    delivery = event.get("deliveryContext")
    return BeaconVisit(
        webhook_event_id=event_id,
        line_user_id=user,
        hwid=hwid.lower(),
        type=str(kind),
        dm=dm,
        reply_token=reply if isinstance(reply, str) and reply else None,
        received_at=received_at,
        sent_at=sent_at,
        redelivery=isinstance(delivery, Mapping) and delivery.get("isRedelivery") is True,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class BeaconSetup:
    """The configuration `decide` needs: this counter's beacon, the key, the greetings."""

    store_hwid: str  # "" when this counter advertises no beacon
    key: bytes
    greetings: Sequence[GreetingConfig]
    reply_ttl_s: float
    zone: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ShopperState:
    """What the counter remembers that bears on this event."""

    event_seen: bool  # this webhookEventId was handled before
    last_greeted_at: float | None  # this shopper's last greeting at this store


class Action(StrEnum):
    REPLY = "reply"  # send the greeting with the event's reply token (free)
    PUSH = "push"  # send the greeting as a push (paid; budget and quota checked then)
    RECORD = "record"  # a verified visit: recorded, nothing sent
    REJECT = "reject"  # bad input: counted, logged once, nothing sent


class Reason(StrEnum):
    GREET = "greet"
    GREET_BY_PUSH = "greet_by_push"
    STAY = "stay"
    BANNER = "banner"
    NO_GREETING = "no_greeting"  # no enabled greeting active today for this beacon
    COOLDOWN = "cooldown"
    STALE_TOKEN = "stale_token"  # noqa: S105 (a reason, not a secret)
    REPLAYED = "replayed"
    UNKNOWN_HWID = "unknown_hwid"
    NO_REPLY_TOKEN = "no_reply_token"  # noqa: S105
    SPOOFED = "spoofed"
    MALFORMED = "malformed"


REJECTIONS = frozenset(
    {Reason.REPLAYED, Reason.UNKNOWN_HWID, Reason.NO_REPLY_TOKEN, Reason.SPOOFED, Reason.MALFORMED}
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    greeting: GreetingConfig | None = None
    verdict: Verdict | None = None

    @property
    def verified(self) -> bool:
        return self.verdict in (Verdict.CURRENT, Verdict.PREVIOUS)


def _reject(reason: Reason, verdict: Verdict | None = None) -> Decision:
    return Decision(action=Action.REJECT, reason=reason, verdict=verdict)


def _fresh(received_at: float | None, now: float, ttl: float) -> bool:
    return received_at is not None and 0 <= now - received_at < ttl


def decide(visit: BeaconVisit | Malformed, state: ShopperState, setup: BeaconSetup, now: float) -> Decision:
    """What to do with one beacon event (see the module docstring for the rules and their order)."""
    if isinstance(visit, Malformed):
        return _reject(Reason.MALFORMED)
    if state.event_seen:
        return _reject(Reason.REPLAYED)
    if not setup.store_hwid or visit.hwid != setup.store_hwid:
        return _reject(Reason.UNKNOWN_HWID)
    if visit.reply_token is None:
        return _reject(Reason.NO_REPLY_TOKEN)
    hwid = bytes.fromhex(visit.hwid)
    verdict = Verdict.INVALID if visit.dm is None else verify(setup.key, hwid, visit.dm, now)
    if verdict is Verdict.INVALID:
        return _reject(Reason.SPOOFED, verdict)
    if visit.type != "enter":
        reason = Reason.STAY if visit.type == "stay" else Reason.BANNER
        return Decision(action=Action.RECORD, reason=reason, verdict=verdict)
    day = datetime.fromtimestamp(now, ZoneInfo(setup.zone)).date()
    greeting = next((g for g in setup.greetings if g.active_on(day, visit.hwid)), None)
    if greeting is None:
        return Decision(action=Action.RECORD, reason=Reason.NO_GREETING, verdict=verdict)
    if state.last_greeted_at is not None and now - state.last_greeted_at < greeting.cooldown_h * 3600:
        return Decision(action=Action.RECORD, reason=Reason.COOLDOWN, greeting=greeting, verdict=verdict)
    if _fresh(visit.received_at, now, setup.reply_ttl_s):
        return Decision(action=Action.REPLY, reason=Reason.GREET, greeting=greeting, verdict=verdict)
    if greeting.push_fallback:
        return Decision(action=Action.PUSH, reason=Reason.GREET_BY_PUSH, greeting=greeting, verdict=verdict)
    return Decision(action=Action.RECORD, reason=Reason.STALE_TOKEN, greeting=greeting, verdict=verdict)


def greeting_messages(greeting: GreetingConfig) -> list[dict[str, Any]]:
    """The greeting as one text message: zh-TW first, then English (one message, one reply)."""
    text = greeting.text_zh if not greeting.text_en else f"{greeting.text_zh}\n{greeting.text_en}"
    return [{"type": "text", "text": text[:5000]}]
