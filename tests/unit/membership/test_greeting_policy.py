"""The greeting policy: parsing every shape of a relayed beacon event, and `decide` over every
rule and the order between them."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from membership.beacon_code import SLOT_S, Verdict, code_at
from membership.greeting import (
    Action,
    BeaconSetup,
    BeaconVisit,
    GreetingConfig,
    Malformed,
    Reason,
    ShopperState,
    decide,
    greeting_messages,
    parse_beacon_event,
)

KEY = b"store-binding-key"
HWID = "32af519e88"
USER = "U" + "a" * 32
NOW = 1_790_000_100.0 + 42  # 2026-09-21 local time, 42 s into a slot
GREETING = GreetingConfig()
SETUP = BeaconSetup(store_hwid=HWID, key=KEY, greetings=(GREETING,), reply_ttl_s=20.0, zone="Asia/Taipei")
FRESH = ShopperState(event_seen=False, last_greeted_at=None)


def dm_at(t: float) -> str:
    return code_at(KEY, bytes.fromhex(HWID), t).hex()


def event(**beacon: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hwid": HWID, "type": "enter", "dm": dm_at(NOW)}
    body.update(beacon)
    return {
        "event": {
            "type": "beacon",
            "webhookEventId": "01HZZZBEACON0000000000000A",
            "timestamp": int((NOW - 1) * 1000),
            "replyToken": "reply-token-1",
            "source": {"type": "user", "userId": USER},
            "deliveryContext": {"isRedelivery": False},
            "beacon": {k: v for k, v in body.items() if v is not None},
        },
        "relay": {"received_at": NOW - 0.5},
    }


def visit(**changes: Any) -> BeaconVisit:
    parsed = parse_beacon_event(event())
    assert isinstance(parsed, BeaconVisit)
    return replace(parsed, **changes)


# ---------------------------------------------------------------- parsing


def test_parse_a_good_event() -> None:
    parsed = parse_beacon_event(event())
    assert parsed == BeaconVisit(
        webhook_event_id="01HZZZBEACON0000000000000A",
        line_user_id=USER,
        hwid=HWID,
        type="enter",
        dm=bytes.fromhex(dm_at(NOW)),
        reply_token="reply-token-1",
        received_at=NOW - 0.5,
        sent_at=NOW - 1,
        redelivery=False,
    )


def test_parse_a_whole_envelope_and_upper_case_hex() -> None:
    data = event(hwid=HWID.upper(), dm=dm_at(NOW).upper())
    parsed = parse_beacon_event({"id": "x", "data": data})
    assert isinstance(parsed, BeaconVisit)
    assert parsed.hwid == HWID
    assert parsed.dm == bytes.fromhex(dm_at(NOW))


def test_no_relay_time_falls_back_to_the_event_timestamp() -> None:
    data = event()
    del data["relay"]
    parsed = parse_beacon_event(data)
    assert isinstance(parsed, BeaconVisit)
    assert parsed.received_at == NOW - 1


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"event": "x"},
        {"event": {"type": "message"}},
        {"event": {"type": "follow", "source": {"userId": USER}}},
    ],
)
def test_other_events_are_not_ours(data: dict[str, Any]) -> None:
    assert parse_beacon_event(data) is None


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    data = event()
    target = data["event"]
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_without(("webhookEventId",)), "webhookEventId"),
        (_without(("source",)), "userId"),
        (_without(("source", "userId")), "userId"),
        (_without(("beacon",)), "beacon object"),
        (_without(("beacon", "hwid")), "hwid"),
        (_without(("beacon", "type")), "beacon.type"),
        (event(hwid="32af519e8"), "hwid"),
        (event(hwid=12345), "hwid"),
        (event(type="leave"), "beacon.type"),
        (event(dm="abc"), "dm"),
        (event(dm="00" * 14), "dm"),
        (event(dm=""), "dm"),
        (event(dm=7), "dm"),
        (event(dm="zz"), "dm"),
    ],
)
def test_malformed_events_say_why(data: dict[str, Any], why: str) -> None:
    parsed = parse_beacon_event(data)
    assert isinstance(parsed, Malformed)
    assert why in parsed.why


def test_bad_user_id_is_malformed() -> None:
    data = event()
    data["event"]["source"]["userId"] = "not-a-user"
    assert isinstance(parse_beacon_event(data), Malformed)


def test_no_dm_parses_and_no_reply_token_parses() -> None:
    data = event(dm=None)
    del data["event"]["replyToken"]
    parsed = parse_beacon_event(data)
    assert isinstance(parsed, BeaconVisit)
    assert parsed.dm is None
    assert parsed.reply_token is None


# ---------------------------------------------------------------- decide


def test_a_verified_enter_is_greeted_by_reply() -> None:
    decision = decide(visit(), FRESH, SETUP, NOW)
    assert (decision.action, decision.reason, decision.greeting) == (Action.REPLY, Reason.GREET, GREETING)
    assert decision.verdict is Verdict.CURRENT
    assert decision.verified


def test_dm_from_the_previous_slot_still_greets() -> None:
    decision = decide(visit(dm=bytes.fromhex(dm_at(NOW - SLOT_S))), FRESH, SETUP, NOW)
    assert decision.action is Action.REPLY
    assert decision.verdict is Verdict.PREVIOUS


@pytest.mark.parametrize(
    ("changes", "state", "reason"),
    [
        ({}, ShopperState(event_seen=True, last_greeted_at=None), Reason.REPLAYED),
        ({"hwid": "8adfaf4326"}, FRESH, Reason.UNKNOWN_HWID),
        ({"reply_token": None}, FRESH, Reason.NO_REPLY_TOKEN),
        ({"dm": None}, FRESH, Reason.SPOOFED),
        ({"dm": bytes.fromhex("00")}, FRESH, Reason.SPOOFED),
        ({"dm": bytes.fromhex(dm_at(NOW - 2 * SLOT_S))}, FRESH, Reason.SPOOFED),
        ({"dm": bytes.fromhex(dm_at(NOW + SLOT_S))}, FRESH, Reason.SPOOFED),
    ],
)
def test_bad_input_is_rejected(changes: dict[str, Any], state: ShopperState, reason: Reason) -> None:
    decision = decide(visit(**changes), state, SETUP, NOW)
    assert (decision.action, decision.reason) == (Action.REJECT, reason)
    assert decision.greeting is None
    assert not decision.verified


def test_malformed_is_rejected() -> None:
    decision = decide(Malformed(why="x"), FRESH, SETUP, NOW)
    assert (decision.action, decision.reason) == (Action.REJECT, Reason.MALFORMED)


def test_a_counter_without_a_beacon_knows_no_hwid() -> None:
    setup = replace(SETUP, store_hwid="")
    assert decide(visit(), FRESH, setup, NOW).reason is Reason.UNKNOWN_HWID


def test_a_code_made_under_another_key_is_spoofed() -> None:
    assert decide(visit(), FRESH, replace(SETUP, key=b"other"), NOW).reason is Reason.SPOOFED


@pytest.mark.parametrize(("kind", "reason"), [("stay", Reason.STAY), ("banner", Reason.BANNER)])
def test_stay_and_banner_are_recorded_not_answered(kind: str, reason: Reason) -> None:
    decision = decide(visit(type=kind), FRESH, SETUP, NOW)
    assert (decision.action, decision.reason) == (Action.RECORD, reason)
    assert decision.verified


def test_cooldown_edges() -> None:
    day = GREETING.cooldown_h * 3600
    inside = ShopperState(event_seen=False, last_greeted_at=NOW - day + 1)
    edge = ShopperState(event_seen=False, last_greeted_at=NOW - day)
    assert decide(visit(), inside, SETUP, NOW).reason is Reason.COOLDOWN
    assert decide(visit(), edge, SETUP, NOW).reason is Reason.GREET
    zero = replace(SETUP, greetings=(GREETING.model_copy(update={"cooldown_h": 0}),))
    assert (
        decide(visit(), ShopperState(event_seen=False, last_greeted_at=NOW), zero, NOW).reason is Reason.GREET
    )


def test_stale_token_pushes_only_with_push_fallback() -> None:
    stale = visit(received_at=NOW - 20.0)
    assert decide(stale, FRESH, SETUP, NOW).reason is Reason.STALE_TOKEN
    assert decide(visit(received_at=NOW - 19.99), FRESH, SETUP, NOW).reason is Reason.GREET
    assert decide(visit(received_at=NOW + 1), FRESH, SETUP, NOW).reason is Reason.STALE_TOKEN  # future
    assert decide(visit(received_at=None), FRESH, SETUP, NOW).reason is Reason.STALE_TOKEN
    pushing = replace(SETUP, greetings=(GREETING.model_copy(update={"push_fallback": True}),))
    decision = decide(stale, FRESH, pushing, NOW)
    assert (decision.action, decision.reason) == (Action.PUSH, Reason.GREET_BY_PUSH)


def test_which_greeting_applies() -> None:
    off = GreetingConfig(name="off", enabled=False)
    other_beacon = GreetingConfig(name="door", hwids=["8adfaf4326"])
    later = GreetingConfig(name="later", starts="2027-01-01")
    over = GreetingConfig(name="over", ends="2026-01-01")
    mine = GreetingConfig(name="mine", hwids=[HWID.upper()])
    setup = replace(SETUP, greetings=(off, other_beacon, later, over, mine, GREETING))
    assert decide(visit(), FRESH, setup, NOW).greeting == mine
    none = replace(SETUP, greetings=(off, other_beacon, later, over))
    assert decide(visit(), FRESH, none, NOW).reason is Reason.NO_GREETING
    assert decide(visit(), FRESH, replace(SETUP, greetings=()), NOW).reason is Reason.NO_GREETING


def test_rule_order_over_every_combination() -> None:
    """Each failing check wins over every later one, whatever else is wrong."""
    checks = [
        ("seen", Reason.REPLAYED),
        ("hwid", Reason.UNKNOWN_HWID),
        ("token", Reason.NO_REPLY_TOKEN),
        ("dm", Reason.SPOOFED),
        ("stay", Reason.STAY),
        ("cool", Reason.COOLDOWN),
        ("stale", Reason.STALE_TOKEN),
    ]
    for flags in itertools.product([False, True], repeat=len(checks)):
        bad = {name for (name, _), on in zip(checks, flags, strict=True) if on}
        v = visit(
            hwid="8adfaf4326" if "hwid" in bad else HWID,
            reply_token=None if "token" in bad else "t",
            dm=b"\x00" if "dm" in bad else bytes.fromhex(dm_at(NOW)),
            type="stay" if "stay" in bad else "enter",
            received_at=NOW - 60 if "stale" in bad else NOW,
        )
        state = ShopperState(event_seen="seen" in bad, last_greeted_at=NOW - 60 if "cool" in bad else None)
        expected = next((reason for name, reason in checks if name in bad), Reason.GREET)
        assert decide(v, state, SETUP, NOW).reason is expected, bad


def test_greeting_config_validation() -> None:
    with pytest.raises(ValidationError, match="10 hex digits"):
        GreetingConfig(hwids=["xyz"])
    with pytest.raises(ValidationError, match="before starts"):
        GreetingConfig(starts="2026-02-01", ends="2026-01-01")
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        GreetingConfig(starts="2026-2-1")
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        GreetingConfig(ends="2026-02-30")
    with pytest.raises(ValidationError, match="extra"):
        GreetingConfig(colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GreetingConfig(cooldown_h=-1)
    with pytest.raises(ValidationError):
        GreetingConfig(text_zh="")


def test_greeting_messages_are_one_text_zh_first() -> None:
    assert greeting_messages(GREETING) == [
        {"type": "text", "text": "歡迎光臨!憑此訊息享 88 折\nWelcome! Show this message for 12% off."}
    ]
    assert greeting_messages(GreetingConfig(text_en="")) == [
        {"type": "text", "text": "歡迎光臨!憑此訊息享 88 折"}
    ]
