"""The beacon greeting against the Messaging API emulator, with a real SQLite state DB.

Events are built by the emulator (`beacon_event`, with the dm its own `counter_beacon_dm`
computes from the documented scheme), so the counter verifies a code it did not make itself.
The emulator and the agent share one fake wall clock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import ShopEdgeConfig, parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from base.statedb import StateDB
from emulators.messaging import MessagingEmulator, running_emulator
from emulators.messaging.webhooks import beacon_event, counter_beacon_dm, webhook_event_id
from membership.conversion import ConversionConsumer, ConversionStatus
from membership.coupons import CouponService, facts_since_blocking
from membership.coupons._ledger import get_blocking
from membership.greeter import Greeter, GreetOutcome, rejection_counts_blocking
from membership.greeting import Reason
from offline_queue import Outbox

T0 = 1_790_000_100.0 + 10  # 10 s into a 300 s slot; 2026-09-21 in Asia/Taipei
KEY = "store-binding-key-for-tests-0001"
HWID = "32af519e88"
H = 3600.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def user(n: int) -> str:
    return f"U{n:032x}"


@dataclass
class Rig:
    emulator: MessagingEmulator
    clock: Clock
    db: StateDB
    ctx: AgentContext
    greeter: Greeter
    coupons: CouponService

    def event(
        self,
        n: int,
        *,
        dm: str | None = "auto",
        hwid: str = HWID,
        kind: str = "enter",
        token: bool = True,
        event_id: str | None = None,
        age: float = 0.0,
        seen_at: float | None = None,
    ) -> dict[str, Any]:
        """A relayed envelope's data for user n's phone seeing the counter `age` seconds ago."""
        reply = self.emulator.issue_reply_token(user(n)) if token else None
        code = (
            counter_beacon_dm(KEY, hwid, seen_at if seen_at is not None else self.clock.now)
            if dm == "auto"
            else dm
        )
        event = beacon_event(
            user(n),
            hwid,
            beacon_type=kind,  # type: ignore[arg-type]
            dm=code,
            timestamp_ms=int((self.clock.now - age) * 1000),
            event_id=event_id or webhook_event_id(),
            reply_token=reply,
        )
        if not token:
            event.pop("replyToken", None)
        return {"event": event, "relay": {"received_at": self.clock.now - age}}

    async def handle(self, data: dict[str, Any]) -> GreetOutcome:
        outcome = await self.greeter.handle(data)
        assert outcome is not None
        return outcome

    def kinds(self) -> list[str]:
        return [f.kind.value for f in facts_since_blocking(self.db, 0)]


def make_config(
    base_url: str,
    tmp_path: Path,
    greeting: dict[str, Any],
    campaigns: list[dict[str, Any]],
    token: str = "tok",
) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path)},
            "line": {"api_base": base_url, "channel_access_token": token},
            "binding": {"key": KEY},
            "beacon": {"hwid": HWID.upper(), "advertise": True},
            "greetings": [greeting],
            "campaigns": campaigns,
            "timeouts": {"line_api": 2.0},
        },
        environ={},
    )


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    options = getattr(request, "param", {})
    clock = Clock()
    emulator = MessagingEmulator(access_tokens={"tok"}, clock=clock, quota_value=options.get("quota", 1000))
    async with running_emulator(emulator) as (_, base_url):
        config = make_config(
            base_url,
            tmp_path,
            options.get("greeting", {}),
            options.get("campaigns", [{"name": "welcome"}]),
            options.get("token", "tok"),
        )
        path = tmp_path / "shopedge.db"
        db = open_state_db(path)
        migrate(db)
        outbox = await Outbox.open(path, clock=clock)
        ctx = AgentContext(config=config, db=db, wall_clock=clock)
        ctx.services["outbox"] = outbox
        coupons = CouponService(ctx, outbox=outbox)
        try:
            yield Rig(emulator, clock, db, ctx, Greeter(ctx), coupons)
        finally:
            await coupons.aclose()
            await outbox.close()
            db.close()


TEXT = "歡迎光臨!憑此訊息享 88 折\nWelcome! Show this message for 12% off."


async def test_a_friend_walking_in_is_greeted_once_by_free_reply(rig: Rig) -> None:
    outcome = await rig.handle(rig.event(1, age=2))
    assert (outcome.reason, outcome.channel, outcome.result) == (Reason.GREET, "reply", "sent")
    (delivery,) = rig.emulator.deliveries
    assert (delivery.via, delivery.to) == ("reply", user(1))
    assert delivery.messages == ({"type": "text", "text": TEXT},)
    assert rig.emulator.total_usage == 0  # a reply costs nothing
    assert rig.kinds() == ["beacon_visit", "greeting_replied"]

    # a second enter within the cool-down: recorded as a visit, nothing sent
    rig.clock.now += 3 * H
    again = await rig.handle(rig.event(1))
    assert again.reason is Reason.COOLDOWN
    assert len(rig.emulator.deliveries) == 1
    assert rig.kinds() == ["beacon_visit", "greeting_replied", "beacon_visit"]

    # another shopper meanwhile is greeted; the first one again after 24 h
    assert (await rig.handle(rig.event(2))).result == "sent"
    rig.clock.now += 21 * H
    assert (await rig.handle(rig.event(1))).result == "sent"
    assert [d.to for d in rig.emulator.deliveries] == [user(1), user(2), user(1)]


async def test_a_code_seen_just_before_the_slot_edge_still_verifies(rig: Rig) -> None:
    edge = T0 - 10 + 300  # the next slot starts here
    rig.clock.now = edge + 1
    outcome = await rig.handle(rig.event(3, seen_at=edge - 1, age=0.5))
    assert outcome.result == "sent"
    rig.clock.now = edge + 300 + 1  # two slots on, the same code is a recording
    late = await rig.handle(rig.event(4, seen_at=edge - 1))
    assert late.reason is Reason.SPOOFED


async def test_bad_input_is_counted_logged_once_and_answered_with_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="membership.greeter")
    first = rig.event(5)
    assert (await rig.handle(first)).reason is Reason.GREET
    cases = [
        (first, Reason.REPLAYED),  # the same webhookEventId again (a redelivery or a replay)
        (rig.event(6, hwid="8adfaf4326"), Reason.UNKNOWN_HWID),
        (rig.event(7, dm=counter_beacon_dm("another-store-key", HWID, T0)), Reason.SPOOFED),
        (rig.event(8, dm="00"), Reason.SPOOFED),  # a copy advertising LINE's "unused" dm
        (rig.event(9, dm=None), Reason.SPOOFED),
        (rig.event(10, dm=counter_beacon_dm(KEY, HWID, T0 - 600)), Reason.SPOOFED),
        (rig.event(11, token=False), Reason.NO_REPLY_TOKEN),
    ]
    broken = rig.event(12)
    broken["event"]["beacon"] = {"hwid": HWID, "type": "leave"}
    cases.append((broken, Reason.MALFORMED))
    no_object = rig.event(13)
    del no_object["event"]["beacon"]
    cases.append((no_object, Reason.MALFORMED))
    for data, reason in cases:
        assert (await rig.handle(data)).reason is reason
    assert len(rig.emulator.deliveries) == 1  # only user 5's greeting
    assert rejection_counts_blocking(rig.db) == {
        "replayed": 1,
        "unknown_hwid": 1,
        "spoofed": 4,
        "no_reply_token": 1,
        "malformed": 2,
    }
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.reason for r in warnings) == sorted(  # type: ignore[attr-defined]
        ["replayed", "unknown_hwid", "spoofed", "no_reply_token", "malformed"]
    )
    with rig.db.transaction() as conn:
        assert conn.execute("SELECT webhook_event_id FROM beacon_events").fetchall() == [
            (first["event"]["webhookEventId"],)
        ]


async def test_stay_and_banner_are_recorded_not_answered(rig: Rig) -> None:
    for kind in ("stay", "banner"):
        outcome = await rig.handle(rig.event(20, kind=kind))
        assert outcome.reason.value == kind
    assert rig.emulator.deliveries == []
    assert rig.kinds() == []  # a visit is an `enter`
    with rig.db.transaction() as conn:
        assert sorted(r[0] for r in conn.execute("SELECT type FROM beacon_events")) == ["banner", "stay"]


async def test_a_stale_token_without_push_fallback_sends_nothing(rig: Rig) -> None:
    outcome = await rig.handle(rig.event(21, age=45))  # reply_token_ttl_s is 40
    assert outcome.reason is Reason.STALE_TOKEN
    assert rig.emulator.deliveries == []


@pytest.mark.parametrize("rig", [{"greeting": {"push_fallback": True, "monthly_budget": 2}}], indirect=True)
async def test_push_fallback_stays_within_the_greeting_budget(rig: Rig) -> None:
    results = []
    for n in (30, 31, 32):
        results.append(await rig.handle(rig.event(n, age=45)))
    assert [(r.channel, r.result) for r in results] == [("push", "sent"), ("push", "sent"), ("push", "held")]
    assert "budget of 2 pushes" in results[2].detail
    assert [d.via for d in rig.emulator.deliveries] == ["push", "push"]
    assert rig.emulator.total_usage == 2
    assert rig.kinds().count("greeting_pushed") == 2
    # a fresh token still greets for free when the push budget is spent
    assert (await rig.handle(rig.event(33))).channel == "reply"


@pytest.mark.parametrize("rig", [{"greeting": {"push_fallback": True}, "quota": 5}], indirect=True)
async def test_push_fallback_stops_at_the_account_quota(rig: Rig) -> None:
    rig.emulator.set_quota(usage=5)
    outcome = await rig.handle(rig.event(40, age=45))
    assert (outcome.result, outcome.detail) == ("held", "account quota spent (5/5)")
    assert rig.emulator.deliveries == []
    # not greeted, so no cool-down: a later fresh visit is greeted
    assert (await rig.handle(rig.event(40))).result == "sent"


@pytest.mark.parametrize(
    "rig",
    [
        {
            "greeting": {"campaign": "greet88"},
            "campaigns": [{"name": "welcome"}, {"name": "greet88", "title": "88 折"}],
        }
    ],
    indirect=True,
)
async def test_a_greeting_with_a_coupon_gives_one_coupon_per_shopper(rig: Rig) -> None:
    outcome = await rig.handle(rig.event(50))
    assert (outcome.channel, outcome.result) == ("reply", "sent")
    (delivery,) = rig.emulator.deliveries
    assert delivery.messages[0] == {"type": "text", "text": TEXT}
    assert delivery.messages[-1]["type"] == "flex"  # the coupon card, in the same free reply
    row = get_blocking(rig.db, "greet88", user(50))
    assert row is not None and row.channel == "reply"
    rig.clock.now += 25 * H  # after the cool-down: greeted again, but the coupon was once
    again = await rig.handle(rig.event(50))
    assert again.result == "sent"
    assert rig.emulator.deliveries[-1].messages == ({"type": "text", "text": TEXT},)
    assert rig.emulator.total_usage == 0


async def test_the_conversion_consumer_hands_beacon_events_to_the_greeter(rig: Rig) -> None:
    consumer = ConversionConsumer(rig.ctx)
    result = await consumer.handle(rig.event(60))
    assert (result.status, result.reason) == (ConversionStatus.IGNORED, "beacon_event")
    assert [d.to for d in rig.emulator.deliveries] == [user(60)]
    health = rig.ctx.health.get("greeting")
    assert health is not None and "1 greet" in health.detail


async def test_an_unanswered_reply_that_was_delivered_counts_once(rig: Rig) -> None:
    from emulators.messaging import Fault

    # LINE takes the reply but the answer is lost; the retry finds the token used: delivered.
    rig.emulator.inject(Fault(endpoint="reply", kind="503", after_accept=True))
    outcome = await rig.handle(rig.event(70))
    assert (outcome.channel, outcome.result) == ("reply", "sent")
    assert len(rig.emulator.deliveries_to(user(70))) == 1
    assert (await rig.handle(rig.event(70))).reason is Reason.COOLDOWN


async def test_a_refused_reply_starts_no_cooldown(rig: Rig) -> None:
    from emulators.messaging import Fault

    rig.emulator.inject(Fault(endpoint="reply", kind="400"))
    outcome = await rig.handle(rig.event(71))
    assert (outcome.channel, outcome.result) == ("reply", "failed")
    assert rig.emulator.deliveries_to(user(71)) == []
    assert (await rig.handle(rig.event(71))).result == "sent"  # the next visit is greeted


@pytest.mark.parametrize("rig", [{"token": ""}], indirect=True)
async def test_without_a_channel_token_nothing_is_sent_and_no_cooldown_starts(rig: Rig) -> None:
    outcome = await rig.handle(rig.event(80))
    assert (outcome.reason, outcome.result) == (Reason.GREET, "not_configured")
    assert rig.emulator.deliveries == []
    assert (await rig.handle(rig.event(80))).reason is Reason.GREET  # still greetable once configured
