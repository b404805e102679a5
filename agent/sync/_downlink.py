"""Downlink handling: what the device does with `.../down/{kind}` messages.

Pure decisions, no I/O: `decide(...)` turns one MQTT message into a `Decision` that the
sync service performs (apply config, run a command, hand a LINE event on, or drop). Rules:
- the device's own downlink and its store's store-wide one (`_store`, LINE events only) count;
- malformed payloads (deep, huge, not JSON: the bounded reader) are counted and dropped
  (never crash the session);
- unknown kinds are logged and ignored;
- a message whose envelope `id` was already handled is ignored (QoS 1 may deliver twice);
- `config` changes only keys in `LIVE_KEYS` whose readers all follow the live config, all or
  none, each validated strictly (no string for a number, no boolean for an integer) by the
  same pydantic model as the config file;
- `command` knows `ping`, `resync` and `rotate_logs`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from agent.config import ShopEdgeConfig
from base.envelope import Envelope, MalformedMessage, decode_message
from base.topics import DOWN_KINDS, STORE_WIDE, STORE_WIDE_KINDS, TopicError, parse_topic

__all__ = [
    "COMMANDS",
    "LIVE_KEYS",
    "Decision",
    "SeenIds",
    "apply_live_config",
    "decide",
]

# Keys the cloud may change without a restart, each with the components that read it. A key is
# live only while every one of them follows the live config (`agent.live_config.LiveConfig.
# follow`), so the new value is used at once by all; otherwise the change is refused. Identity,
# credentials, hosts and ports are never live. Not live on purpose: `ble.beacon_silent_after_s`
# (the ops page and doctor read it from the file) and `linepay.fee_rate` (`shopedge report`,
# a separate process, reads the file).
LIVE_KEYS: Mapping[str, frozenset[str]] = {
    "mqtt.batch_max": frozenset({"sync"}),
    "pos.max_amount_twd": frozenset({"pos"}),  # the till API's limit and its OpenAPI maximum
    "presence.enter_rssi": frozenset({"ble"}),
    "presence.exit_rssi": frozenset({"ble"}),
    "presence.enter_sightings": frozenset({"ble"}),
    "presence.away_after_s": frozenset({"ble"}),
    "presence.stay_interval_s": frozenset({"ble"}),
    "display.language": frozenset({"display"}),
}
COMMANDS: frozenset[str] = frozenset({"ping", "resync", "rotate_logs"})

Action = Literal["config", "command", "line_event", "drop_malformed", "ignore_unknown", "ignore_duplicate"]


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What to do with one downlink message."""

    action: Action
    envelope: Envelope | None = None
    reason: str = ""
    command: str = ""
    changes: Mapping[str, Any] = field(default_factory=dict)


class SeenIds:
    """The last `size` envelope ids handled, to ignore QoS 1 redeliveries."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, envelope_id: str) -> bool:
        """Remember an id; False if it was already there."""
        if envelope_id in self._ids:
            return False
        self._ids[envelope_id] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def decide(topic: str, payload: bytes, *, store_id: str, device_id: str, seen: SeenIds) -> list[Decision]:
    """Decide what each envelope of one downlink message means (a batch gives several)."""
    try:
        ref = parse_topic(topic)
    except TopicError as exc:
        return [Decision(action="ignore_unknown", reason=str(exc))]
    if ref.direction != "down" or ref.store_id != store_id or ref.device_id not in (device_id, STORE_WIDE):
        return [Decision(action="ignore_unknown", reason=f"not this device's downlink: {topic}")]
    if ref.kind not in DOWN_KINDS:
        return [Decision(action="ignore_unknown", reason=f"unknown downlink kind {ref.kind!r}")]
    if ref.device_id == STORE_WIDE and ref.kind not in STORE_WIDE_KINDS:
        return [Decision(action="ignore_unknown", reason=f"{ref.kind!r} is never store-wide: {topic}")]
    try:
        envelopes = decode_message(payload)
    except MalformedMessage as exc:
        return [Decision(action="drop_malformed", reason=str(exc))]
    return [_decide_one(ref.kind, envelope, seen) for envelope in envelopes]


def _decide_one(kind: str | None, envelope: Envelope, seen: SeenIds) -> Decision:
    if envelope.kind != kind:
        return Decision(
            action="drop_malformed",
            envelope=envelope,
            reason=f"envelope kind {envelope.kind!r} on the {kind!r} topic",
        )
    if not seen.add(envelope.id):
        return Decision(action="ignore_duplicate", envelope=envelope, reason="already handled")
    data = envelope.data
    if kind == "config":
        changes = data.get("set")
        if not isinstance(changes, Mapping) or not changes or set(data) - {"set"}:
            return Decision(
                action="drop_malformed", envelope=envelope, reason='config data must be {"set": {KEY: VALUE}}'
            )
        return Decision(action="config", envelope=envelope, changes=dict(changes))
    if kind == "command":
        name = data.get("name")
        if not isinstance(name, str) or not name:
            return Decision(action="drop_malformed", envelope=envelope, reason="command data needs a name")
        if name not in COMMANDS:
            return Decision(
                action="ignore_unknown", envelope=envelope, command=name, reason=f"unknown command {name!r}"
            )
        return Decision(action="command", envelope=envelope, command=name)
    return Decision(action="line_event", envelope=envelope)


def apply_live_config(
    config: ShopEdgeConfig,
    changes: Mapping[str, Any],
    *,
    following: Mapping[str, AbstractSet[str]] | None = None,
) -> tuple[ShopEdgeConfig | None, dict[str, str]]:
    """The config with `changes` applied, or None and one problem per refused key.

    All or none: one bad key refuses the whole change, so a device never runs half of one.
    With `following` (per key, the readers that use the live value now), a key some reader of
    which does not follow is refused: "applied" would be a lie.
    """
    problems: dict[str, str] = {}
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        if key not in LIVE_KEYS:
            problems[key] = "not a live key (allowed: " + ", ".join(sorted(LIVE_KEYS)) + ")"
            continue
        if following is not None:
            missing = sorted(LIVE_KEYS[key] - set(following.get(key, ())))
            if missing:
                problems[key] = (
                    f"not live on this device now: {', '.join(missing)} does not follow it "
                    "(not running, or reads it only at start); change it in the config file"
                )
                continue
        section, _, name = key.partition(".")
        by_section.setdefault(section, {})[name] = value
    updates: dict[str, BaseModel] = {}
    for section, values in by_section.items():
        current: BaseModel = getattr(config, section)
        try:
            updates[section] = type(current).model_validate({**current.model_dump(), **values}, strict=True)
        except ValidationError as exc:
            for error in exc.errors():
                loc = ".".join(str(part) for part in error["loc"])
                key = f"{section}.{loc}" if loc else section
                problems[key] = str(error["msg"]).removeprefix("Value error, ")
    if problems:
        return None, problems
    return config.model_copy(update=updates), {}
