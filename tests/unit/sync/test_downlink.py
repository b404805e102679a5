"""Downlink decisions (pure): every kind, malformed input, duplicates, live-config rules."""

from __future__ import annotations

import json
import uuid

import pytest

from agent.config import parse_config
from agent.sync import down_topic, format_ts
from agent.sync._downlink import LIVE_KEYS, SeenIds, apply_live_config, decide

CONFIG = parse_config({"device": {"store_id": "s1", "device_id": "d1"}}, environ={})


def payload(kind: str, data: object, eid: str | None = None) -> bytes:
    return json.dumps(
        {"id": eid or str(uuid.uuid4()), "kind": kind, "ts": format_ts(1.7e9), "seq": 0, "data": data}
    ).encode()


def one(topic: str, body: bytes, seen: SeenIds | None = None) -> object:
    (decision,) = decide(topic, body, store_id="s1", device_id="d1", seen=seen or SeenIds())
    return decision


@pytest.mark.parametrize(
    ("kind", "data", "action", "detail"),
    [
        ("config", {"set": {"mqtt.batch_max": 5}}, "config", ""),
        ("config", {"set": {}}, "drop_malformed", "config data"),
        ("config", {"set": 3}, "drop_malformed", "config data"),
        ("config", {"set": {"a": 1}, "extra": 1}, "drop_malformed", "config data"),
        ("command", {"name": "ping"}, "command", ""),
        ("command", {"name": "resync"}, "command", ""),
        ("command", {"name": "rotate_logs"}, "command", ""),
        ("command", {"name": "format_disk"}, "ignore_unknown", "unknown command"),
        ("command", {}, "drop_malformed", "needs a name"),
        ("line_event", {"type": "message"}, "line_event", ""),
    ],
)
def test_each_kind(kind: str, data: object, action: str, detail: str) -> None:
    decision = one(down_topic("s1", "d1", kind), payload(kind, data))
    assert decision.action == action  # type: ignore[attr-defined]
    assert detail in decision.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("topic", "body", "action"),
    [
        ("shopedge/v1/s1/d1/down/firmware", payload("firmware", {}), "ignore_unknown"),
        ("shopedge/v1/s1/other/down/config", payload("config", {"set": {"x": 1}}), "ignore_unknown"),
        ("shopedge/v1/s1/d1/up/sale", payload("sale", {}), "ignore_unknown"),
        ("elsewhere/topic", b"{}", "ignore_unknown"),
        ("shopedge/v1/s1/d1/down/config", b"{broken", "drop_malformed"),
        ("shopedge/v1/s1/d1/down/config", b"\xff", "drop_malformed"),
        ("shopedge/v1/s1/d1/down/config", payload("command", {"name": "ping"}), "drop_malformed"),
    ],
)
def test_foreign_or_broken_messages_never_act(topic: str, body: bytes, action: str) -> None:
    assert one(topic, body).action == action  # type: ignore[attr-defined]


def test_redelivered_envelope_is_ignored_and_batches_split() -> None:
    seen = SeenIds(size=2)
    eid = str(uuid.uuid4())
    topic = down_topic("s1", "d1", "command")
    assert one(topic, payload("command", {"name": "ping"}, eid), seen).action == "command"  # type: ignore[attr-defined]
    assert one(topic, payload("command", {"name": "ping"}, eid), seen).action == "ignore_duplicate"  # type: ignore[attr-defined]
    one(topic, payload("command", {"name": "ping"}), seen)
    one(topic, payload("command", {"name": "ping"}), seen)
    assert one(topic, payload("command", {"name": "ping"}, eid), seen).action == "command"  # type: ignore[attr-defined]
    batch = b"[" + payload("command", {"name": "ping"}) + b"," + payload("command", {"name": "resync"}) + b"]"
    decisions = decide(topic, batch, store_id="s1", device_id="d1", seen=seen)
    assert [d.command for d in decisions] == ["ping", "resync"]


def test_live_config_applies_allowed_keys_all_or_none() -> None:
    new, problems = apply_live_config(CONFIG, {"mqtt.batch_max": 9, "presence.enter_rssi": -70})
    assert problems == {} and new is not None
    assert new.mqtt.batch_max == 9 and new.presence.enter_rssi == -70
    assert CONFIG.mqtt.batch_max == 50, "the original is untouched"
    new, problems = apply_live_config(CONFIG, {"mqtt.batch_max": 9, "mqtt.host": "evil.example"})
    assert new is None and set(problems) == {"mqtt.host"}
    new, problems = apply_live_config(CONFIG, {"mqtt.batch_max": 0})
    assert new is None and "greater than or equal to 1" in problems["mqtt.batch_max"]
    new, problems = apply_live_config(CONFIG, {"presence.exit_rssi": -60})
    assert new is None and "hysteresis" in " ".join(problems.values())
    new, problems = apply_live_config(CONFIG, {"display.language": "fr"})
    assert new is None and "display.language" in problems


def test_no_identity_or_credential_is_live() -> None:
    for key in LIVE_KEYS:
        assert not key.startswith(("device.", "mqtt.host", "mqtt.port", "mqtt.username", "mqtt.password"))
        assert "secret" not in key and "token" not in key
