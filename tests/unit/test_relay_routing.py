"""Relay routing and its bounded memory, as pure functions (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import ConfigError, RelayConfig, parse_config
from cloud.relay import EventMemory, envelope, route_event
from emulators.messaging.webhooks import (
    account_link_event,
    beacon_event,
    follow_event,
    new_user_id,
    text_message_event,
    unfollow_event,
)
from membership.binding import URL_PROMPT, BindingClaims, encode_token

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
RELAY = RelayConfig(beacon_stores={"0123456789": "store-b", "abcdef0123": "store-c/till-9"})
FLEET = RELAY.fleet_topic
USER = new_user_id()
TOKEN = encode_token(
    BindingClaims(store_id="store-a", device_id="counter-1", order_id="9", issued_at=1, ttl_minutes=1), b"k"
)


@pytest.mark.parametrize(
    ("event", "topic", "reason"),
    [
        (
            text_message_event(USER, URL_PROMPT + TOKEN),
            "shopedge/v1/store-a/counter-1/down/line_event",
            "binding",
        ),
        (text_message_event(USER, "JOIN 入會" + TOKEN[:-1]), FLEET, "message_without_token"),
        (text_message_event(USER, URL_PROMPT + TOKEN.lower()), FLEET, "message_without_token"),
        (account_link_event(USER, TOKEN), "shopedge/v1/store-a/counter-1/down/line_event", "account_link"),
        (account_link_event(USER, "x" * 20), FLEET, "account_link_unrouted"),
        (beacon_event(USER, "0123456789"), "shopedge/v1/store-b/_store/down/line_event", "beacon"),
        (beacon_event(USER, "abcdef0123"), "shopedge/v1/store-c/till-9/down/line_event", "beacon"),
        (beacon_event(USER, "ffffffffff"), FLEET, "beacon_unknown_hwid"),
        (follow_event(USER), FLEET, "follow"),
        (unfollow_event(USER), FLEET, "unfollow"),
        ({"type": "postback", "postback": {"data": TOKEN}}, FLEET, "other"),
        ({"type": "message", "message": {"type": "sticker"}}, FLEET, "message_without_token"),
        ({"type": "message", "message": "garbage"}, FLEET, "message_without_token"),
        ({}, FLEET, "other"),
    ],
)
def test_route_event(event: dict[str, object], topic: str, reason: str) -> None:
    decision = route_event(event, RELAY)
    assert (decision.topic, decision.reason) == (topic, reason)


def test_envelope_id_is_stable_per_webhook_event() -> None:
    event = follow_event(USER)
    one = envelope(event, destination="U0", now=1.0, extra={})
    two = envelope(event, destination="U0", now=2.0, extra={})
    assert one["id"] == two["id"] and one["seq"] == event["timestamp"]
    assert envelope(follow_event(USER), destination="U0", now=1.0, extra={})["id"] != one["id"]
    assert one["ts"] == "1970-01-01T00:00:01.000Z"
    stamped = envelope(event, destination="U0", now=1_795_409_159.1234, extra={})
    assert stamped["ts"] == "2026-11-23T04:45:59.123Z"


def test_event_memory_expires_and_caps() -> None:
    now = [0.0]
    memory = EventMemory(10.0, 3, clock=lambda: now[0])
    memory.add("a")
    now[0] = 5.0
    memory.add("b", 42)
    assert "a" in memory and memory.get("b") == 42
    now[0] = 10.0
    assert "a" not in memory and "b" in memory
    for key in "cde":
        memory.add(key)
    assert len(memory) == 3 and "b" not in memory and "e" in memory


@pytest.mark.parametrize(
    ("relay", "needle"),
    [
        ({"beacon_stores": {"xyz": "s"}}, "relay.beacon_stores: Value error, each HWID"),
        ({"beacon_stores": {"0123456789": "a/b/c"}}, "STORE_ID or STORE_ID/DEVICE_ID"),
        ({"fleet_topic": "shopedge/#"}, "relay.fleet_topic"),
    ],
)
def test_bad_relay_config_names_the_key(relay: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device": {"store_id": "s", "device_id": "d"}, "relay": relay}, environ={})
    assert len(info.value.problems) == 1
    assert needle.split(":")[0] in info.value.problems[0]
    assert needle.split(", ")[-1] in info.value.problems[0]


@given(
    st.builds(
        BindingClaims,
        store_id=st.text(alphabet=ID_CHARS, min_size=1, max_size=32),
        device_id=st.text(alphabet=ID_CHARS, min_size=1, max_size=32),
        order_id=st.text(min_size=1, max_size=30).filter(lambda s: len(s.encode()) <= 128),
        issued_at=st.integers(0, 2**32 - 1),
        ttl_minutes=st.integers(1, 2**14 - 1),
    ),
    st.text(max_size=40),
    st.text(max_size=40),
)
def test_any_token_routes_to_the_device_it_names(claims: BindingClaims, before: str, after: str) -> None:
    tok = encode_token(claims, b"any key: the relay never needs it")
    text = f"{before} {tok} {after}"
    decision = route_event(text_message_event(USER, text), RELAY)
    assert decision.topic == f"shopedge/v1/{claims.store_id}/{claims.device_id}/down/line_event"
