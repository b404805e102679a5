"""The MQTT topic contract (v1): which topics a device publishes and subscribes to.

Owns the topic grammar, nothing else; pure functions, no I/O. A topic is
`shopedge/v1/{store_id}/{device_id}/{up|down}/{kind}` plus the retained presence topic
`shopedge/v1/{store_id}/{device_id}/status`. A store-wide downlink, for what concerns the
store rather than one till (a LINE Beacon mapped to a store only), uses the reserved device
id `_store`: every device of the store also subscribes to `shopedge/v1/{store_id}/_store/down/+`
(`store_down_filter`), and the broker ACL lets it read exactly that. Ids are validated by `agent.config`
(`[A-Za-z0-9_-]{1,32}`), which also keeps MQTT wildcards (`+`, `#`) and `/` out of them, so a
device can never address another device's topics by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DOWN_KINDS",
    "PREFIX",
    "STORE_WIDE",
    "UP_KINDS",
    "TopicError",
    "TopicRef",
    "down_filter",
    "down_topic",
    "parse_topic",
    "status_topic",
    "store_down_filter",
    "up_topic",
]

PREFIX = "shopedge/v1"
# Uplink kinds are outbox stream names: the uplink drains exactly these streams.
UP_KINDS: tuple[str, ...] = (
    "payment",
    "sale",
    "conversion",
    "coupon_push",
    "presence",
    "beacon_health",
    "health",
    "funnel",
    "reply",
)
DOWN_KINDS: tuple[str, ...] = ("line_event", "config", "command")
# The device id of a store's store-wide downlink; it carries LINE events only (never config or
# commands, which always name one device).
STORE_WIDE = "_store"
STORE_WIDE_KINDS: tuple[str, ...] = ("line_event",)

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")


class TopicError(ValueError):
    """A topic or topic part that is not part of the v1 contract."""


@dataclass(frozen=True, kw_only=True)
class TopicRef:
    """A parsed device topic."""

    store_id: str
    device_id: str
    direction: Literal["up", "down", "status"]
    kind: str | None


def _check_id(what: str, value: str) -> str:
    if not _ID.match(value):
        raise TopicError(f"{what} must be 1-32 of A-Z a-z 0-9 _ -, got {value!r}")
    return value


def _check_kind(value: str) -> str:
    if not _KIND.match(value):
        raise TopicError(f"kind must be lower_snake_case (1-32 chars), got {value!r}")
    return value


def _base(store_id: str, device_id: str) -> str:
    return f"{PREFIX}/{_check_id('store_id', store_id)}/{_check_id('device_id', device_id)}"


def up_topic(store_id: str, device_id: str, kind: str) -> str:
    """The topic a device publishes `kind` events on."""
    return f"{_base(store_id, device_id)}/up/{_check_kind(kind)}"


def down_topic(store_id: str, device_id: str, kind: str) -> str:
    """The topic the cloud publishes `kind` messages on for one device."""
    return f"{_base(store_id, device_id)}/down/{_check_kind(kind)}"


def down_filter(store_id: str, device_id: str) -> str:
    """The one subscription a device makes: every downlink kind addressed to it."""
    return f"{_base(store_id, device_id)}/down/+"


def store_down_filter(store_id: str) -> str:
    """The second subscription of every device: its store's store-wide downlink."""
    return f"{_base(store_id, STORE_WIDE)}/down/+"


def status_topic(store_id: str, device_id: str) -> str:
    """Retained online/offline status (the last will sets it offline)."""
    return f"{_base(store_id, device_id)}/status"


def parse_topic(topic: str) -> TopicRef:
    """Split a device topic into its parts.

    Raises:
        TopicError: the topic is not a v1 device topic.
    """
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != PREFIX:
        raise TopicError(f"not a {PREFIX} device topic: {topic!r}")
    store_id, device_id = _check_id("store_id", parts[2]), _check_id("device_id", parts[3])
    rest = parts[4:]
    if rest == ["status"]:
        return TopicRef(store_id=store_id, device_id=device_id, direction="status", kind=None)
    if len(rest) == 2 and rest[0] in ("up", "down"):
        direction: Literal["up", "down"] = "up" if rest[0] == "up" else "down"
        return TopicRef(
            store_id=store_id, device_id=device_id, direction=direction, kind=_check_kind(rest[1])
        )
    raise TopicError(f"expected .../up/KIND, .../down/KIND or .../status, got {topic!r}")
