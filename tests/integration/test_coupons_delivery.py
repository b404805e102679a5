"""Welcome-coupon delivery against the Messaging API emulator, with a real SQLite ledger.

The emulator and the agent share one fake wall clock, so reply-token freshness, retry times and
budget months are decided by the test, not by how fast the machine is.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agent.config import ShopEdgeConfig, parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db, prepare_state_db
from base.health import HealthBoard, Level
from base.statedb import StateDB
from emulators.messaging import Fault, MessagingEmulator, running_emulator
from membership.coupons import (
    PUSH_STREAM,
    CouponService,
    DeliveryStatus,
    LedgerState,
    WelcomeRequest,
    deliver_welcome,
    facts_since_blocking,
)
from membership.coupons._ledger import campaign_stop_blocking, get_blocking
from membership.coupons._policy import local_month
from offline_queue import Outbox

T0 = 1_790_000_000.0  # 2026-09-21, a Monday, Asia/Taipei


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
    base_url: str
    clock: Clock
    monotonic: Clock
    db: StateDB
    outbox: Outbox
    path: Path
    ctx: AgentContext
    service: CouponService
    retired: list[CouponService] = field(default_factory=list)

    def request(
        self, n: int, *, token: bool = False, age: float = 0.0, order: str | None = None
    ) -> WelcomeRequest:
        reply_token = self.emulator.issue_reply_token(user(n)) if token else None
        received_at = self.clock()
        self.clock.now += age  # the webhook arrived `age` seconds ago
        if not token:
            self.emulator.add_friend(user(n))
        return WelcomeRequest(
            line_user_id=user(n),
            store_id="store-001",
            device_id="counter-1",
            order_id=order or f"order-{n}",
            reply_token=reply_token,
            reply_token_received_at=received_at if token else None,
            is_new_friend=True,
        )

    def row(self, n: int) -> Any:
        return get_blocking(self.db, "welcome", user(n))

    async def drain(self, rounds: int = 20) -> None:
        """Run the push worker until the stream is empty, stepping the clock past retry times."""
        for _ in range(rounds):
            handled = await self.service.drain_once()
            if await self.outbox.depth(PUSH_STREAM) == 0:
                return
            if handled == 0:
                self.clock.now += 400.0
                self.monotonic.now += 400.0
        raise AssertionError("coupon push jobs did not drain")

    def restart(self) -> CouponService:
        """A new agent process over the same DB and outbox (the old objects are dropped)."""
        self.retired.append(self.service)
        self.db.close()
        self.db = open_state_db(self.path)
        self.ctx = AgentContext(
            config=self.ctx.config,
            db=self.db,
            health=HealthBoard(),
            clock=self.monotonic,
            wall_clock=self.clock,
        )
        self.service = CouponService(self.ctx, outbox=self.outbox, sleep=_no_sleep)
        return self.service


async def _no_sleep(_: float) -> None:
    return None


def make_config(base_url: str, tmp_path: Path, **coupons: Any) -> ShopEdgeConfig:
    campaign = {"name": "welcome", "monthly_budget": coupons.pop("monthly_budget", 200)}
    return parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path)},
            "line": {"api_base": base_url, "channel_access_token": "tok"},
            "timeouts": {"line_api": coupons.pop("line_api", 2.0)},
            "campaigns": [campaign],
            "coupons": coupons,
        },
        environ={},
    )


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    options = getattr(request, "param", {})
    clock, monotonic = Clock(), Clock(1000.0)
    emulator = MessagingEmulator(access_tokens={"tok"}, clock=clock, quota_value=options.get("quota", 1000))
    async with running_emulator(emulator) as (_, base_url):
        config = make_config(base_url, tmp_path, **options.get("config", {}))
        path = tmp_path / "shopedge.db"
        db = open_state_db(path)
        migrate(db)
        outbox = await Outbox.open(path, prepare=prepare_state_db, clock=clock)
        ctx = AgentContext(config=config, db=db, clock=monotonic, wall_clock=clock)
        service = CouponService(ctx, outbox=outbox, sleep=_no_sleep)
        rig = Rig(emulator, base_url, clock, monotonic, db, outbox, path, ctx, service)
        try:
            yield rig
        finally:
            for service in [*rig.retired, rig.service]:
                await service.aclose()
            await outbox.close()
            rig.db.close()


def kinds(rig: Rig) -> list[str]:
    return [f.kind.value for f in facts_since_blocking(rig.db, 0)]


# ------------------------------------------------------------------------------ happy paths


async def test_reply_path_is_free_and_recorded(rig: Rig) -> None:
    result = await deliver_welcome(rig.ctx, rig.request(1, token=True, age=3))
    assert result.status is DeliveryStatus.REPLIED
    (delivery,) = rig.emulator.deliveries
    assert (delivery.via, delivery.to, delivery.retry_key) == ("reply", user(1), None)
    flex = delivery.messages[-1]
    assert flex["type"] == "flex"
    assert flex["contents"]["footer"]["contents"][0]["action"]["clipboardText"] == result.code
    row = rig.row(1)
    assert (row.state, row.channel) == (LedgerState.SENT, "reply")
    assert rig.emulator.total_usage == 0
    assert await rig.outbox.depth(PUSH_STREAM) == 0
    assert kinds(rig) == ["coupon_replied"]


async def test_push_path_uses_the_ledger_retry_key(rig: Rig) -> None:
    result = await deliver_welcome(rig.ctx, rig.request(2))
    assert result.status is DeliveryStatus.QUEUED
    assert rig.emulator.deliveries == []
    await rig.drain()
    (delivery,) = rig.emulator.deliveries
    row = rig.row(2)
    assert (delivery.via, delivery.retry_key) == ("push", row.retry_key)
    assert (row.state, row.channel, row.request_id) == (LedgerState.SENT, "push", delivery.request_id)
    assert row.month == local_month(T0, "Asia/Taipei")
    assert rig.emulator.total_usage == 1
    assert kinds(rig) == ["coupon_pushed"]


async def test_stale_token_is_not_tried(rig: Rig) -> None:
    await deliver_welcome(rig.ctx, rig.request(3, token=True, age=41))  # older than reply_token_ttl_s=40
    await rig.drain()
    assert [d.via for d in rig.emulator.deliveries] == ["push"]


async def test_token_line_already_expired_falls_back_to_push(rig: Rig) -> None:
    rig.emulator.reply_token_ttl = 5.0  # LINE's window is shorter than ours this time
    result = await deliver_welcome(rig.ctx, rig.request(4, token=True, age=6))
    assert result.status is DeliveryStatus.QUEUED
    await rig.drain()
    assert [d.via for d in rig.emulator.deliveries] == ["push"]


async def test_second_conversion_of_the_same_user_gets_nothing(rig: Rig) -> None:
    first = await deliver_welcome(rig.ctx, rig.request(5, token=True))
    again = await deliver_welcome(rig.ctx, rig.request(5, token=True, order="order-5b"))
    third = await deliver_welcome(rig.ctx, rig.request(5))
    await rig.drain()
    assert first.status is DeliveryStatus.REPLIED
    assert (again.status, third.status) == (DeliveryStatus.DUPLICATE, DeliveryStatus.DUPLICATE)
    assert again.code == first.code
    assert len(rig.emulator.deliveries) == 1


@pytest.mark.parametrize("rig", [{"config": {}}], indirect=True)
async def test_campaign_outside_its_dates_is_skipped(rig: Rig, tmp_path: Path) -> None:
    config = rig.ctx.config
    campaign = config.campaigns[0].model_copy(update={"ends": "2026-01-31"})
    rig.ctx.config = config.model_copy(update={"campaigns": [campaign]})
    rig.service = rig.restart()
    result = await deliver_welcome(rig.ctx, rig.request(6, token=True))
    assert result.status is DeliveryStatus.SKIPPED
    assert rig.emulator.deliveries == []


# ------------------------------------------------------------------------------ push error classes


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        (Fault(kind="503"), 2),
        (Fault(kind="500", after_accept=True), 2),  # accepted, answer lost: the resend gets 409
        (Fault(kind="timeout", after_accept=True, hang_s=3.0), 2),
        (Fault(kind="timeout", hang_s=3.0), 2),
        (Fault(kind="rate_limit"), 2),
    ],
    ids=["5xx", "5xx-after-accept", "timeout-after-accept", "timeout", "rate-limit"],
)
@pytest.mark.parametrize("rig", [{"config": {"line_api": 1.0}}], indirect=True)
async def test_retryable_push_errors_resend_with_the_same_key(rig: Rig, fault: Fault, attempts: int) -> None:
    rig.emulator.inject(fault)
    await deliver_welcome(rig.ctx, rig.request(10))
    await rig.drain()
    (delivery,) = rig.emulator.deliveries
    row = rig.row(10)
    assert (row.state, row.attempts) == (LedgerState.SENT, attempts)
    assert delivery.retry_key == row.retry_key
    assert row.request_id == delivery.request_id  # a 409 names the original request
    assert kinds(rig) == ["coupon_pushed"]


async def test_401_alerts_and_retries_with_the_same_key(rig: Rig) -> None:
    rig.emulator.inject(Fault(kind="401"))
    await deliver_welcome(rig.ctx, rig.request(11))
    await rig.service.drain_once()
    health = rig.ctx.health.get("coupons")
    assert health is not None and health.level is Level.RED and "401" in health.detail
    assert rig.row(11).state is LedgerState.QUEUED
    await rig.drain()
    assert rig.row(11).state is LedgerState.SENT
    assert rig.ctx.health.get("coupons").level is Level.GREEN  # type: ignore[union-attr]
    assert len(rig.emulator.deliveries) == 1


@pytest.mark.parametrize("kind", ["400", "403"])
async def test_400_and_403_dead_letter_with_the_reason(rig: Rig, kind: str) -> None:
    rig.emulator.inject(Fault(kind=kind))  # type: ignore[arg-type]
    await deliver_welcome(rig.ctx, rig.request(12))
    await rig.drain()
    row = rig.row(12)
    assert row.state is LedgerState.DEAD
    assert row.error.startswith(kind)
    assert rig.emulator.deliveries == []
    (letter,) = await rig.outbox.dead_letters(PUSH_STREAM)
    assert f"LINE refused the push: {kind}" in letter.reason, letter.reason


async def test_unknown_user_is_dead_not_retried(rig: Rig) -> None:
    request = WelcomeRequest(line_user_id=user(13), store_id="store-001", device_id="counter-1")
    await deliver_welcome(rig.ctx, request)  # never befriended the emulated account
    await rig.drain()
    assert rig.row(13).state is LedgerState.DEAD
    assert "Failed to send messages" in rig.row(13).error


async def test_monthly_limit_429_stops_the_campaign(rig: Rig) -> None:
    rig.emulator.inject(Fault(kind="monthly_limit"))
    await deliver_welcome(rig.ctx, rig.request(14))
    await deliver_welcome(rig.ctx, rig.request(15))
    await rig.drain()
    month = local_month(T0, "Asia/Taipei")
    assert campaign_stop_blocking(rig.db, "welcome", month) == "LINE monthly message limit reached"
    assert (rig.row(14).state, rig.row(15).state) == (LedgerState.HELD, LedgerState.HELD)
    health = rig.ctx.health.get("coupons")
    assert health is not None and health.level is Level.AMBER
    pushes = [d for d in rig.emulator.deliveries if d.via == "push"]
    assert pushes == []
    # A reply is still free and still allowed while pushes are stopped.
    result = await deliver_welcome(rig.ctx, rig.request(16, token=True))
    assert result.status is DeliveryStatus.REPLIED
    assert rig.ctx.health.get("coupons").level is Level.AMBER  # type: ignore[union-attr]
    service = rig.restart()  # the stop is remembered across a restart
    task = asyncio.create_task(service.run())
    for _ in range(1000):  # up to 10 s on a loaded machine
        if rig.ctx.health.get("coupons") is not None:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "stopped for" in rig.ctx.health.get("coupons").detail  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ reply error classes


@pytest.mark.parametrize("rig", [{"config": {"line_api": 1.0}}], indirect=True)
async def test_reply_5xx_before_accept_retries_the_reply(rig: Rig) -> None:
    rig.emulator.inject(Fault(endpoint="reply", kind="503"))
    result = await deliver_welcome(rig.ctx, rig.request(20, token=True))
    assert result.status is DeliveryStatus.REPLIED
    assert [d.via for d in rig.emulator.deliveries] == ["reply"]


@pytest.mark.parametrize("rig", [{"config": {"line_api": 1.0}}], indirect=True)
async def test_reply_lost_answer_is_inferred_from_the_consumed_token(rig: Rig) -> None:
    rig.emulator.inject(Fault(endpoint="reply", kind="timeout", after_accept=True, hang_s=3.0))
    result = await deliver_welcome(rig.ctx, rig.request(21, token=True))
    await rig.drain()
    assert result.status is DeliveryStatus.REPLIED
    assert [d.via for d in rig.emulator.deliveries] == ["reply"]
    assert "inferred" in rig.row(21).error


@pytest.mark.parametrize("rig", [{"config": {"line_api": 1.0}}], indirect=True)
async def test_reply_never_answered_is_unknown_and_not_pushed(rig: Rig) -> None:
    rig.emulator.inject(*[Fault(endpoint="reply", kind="503") for _ in range(3)])
    result = await deliver_welcome(rig.ctx, rig.request(22, token=True))
    await rig.drain()
    assert result.status is DeliveryStatus.UNKNOWN
    assert rig.row(22).state is LedgerState.UNKNOWN
    assert rig.emulator.deliveries == []


async def test_reply_401_alerts_and_falls_back_to_push(rig: Rig) -> None:
    rig.emulator.inject(Fault(endpoint="reply", kind="401"))
    result = await deliver_welcome(rig.ctx, rig.request(23, token=True))
    assert result.status is DeliveryStatus.QUEUED
    assert rig.ctx.health.get("coupons").level is Level.RED  # type: ignore[union-attr]
    await rig.drain()
    assert [d.via for d in rig.emulator.deliveries] == ["push"]


async def test_reply_400_is_dead(rig: Rig) -> None:
    rig.emulator.inject(Fault(endpoint="reply", kind="400"))
    result = await deliver_welcome(rig.ctx, rig.request(24, token=True))
    assert result.status is DeliveryStatus.DEAD
    assert rig.emulator.deliveries == []


# ------------------------------------------------------------------------------ crashes


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, no except clause catches it."""


async def test_crash_between_push_and_record_sends_no_second_coupon(rig: Rig) -> None:
    await deliver_welcome(rig.ctx, rig.request(30))
    line = await rig.service.line()
    real_push = line.push

    async def push_then_die(*args: Any, **kwargs: Any) -> Any:
        await real_push(*args, **kwargs)
        raise Crash

    line.push = push_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await rig.service.drain_once()
    assert len(rig.emulator.deliveries) == 1
    assert rig.row(30).state is LedgerState.QUEUED  # the send was never recorded
    await rig.service.aclose()

    service = rig.restart()
    rig.clock.now += 120  # the dead worker's lease runs out
    await service.recover()
    await rig.drain()
    row = rig.row(30)
    assert row.state is LedgerState.SENT
    assert len(rig.emulator.deliveries) == 1  # the resend got 409, not a second coupon
    assert row.request_id == rig.emulator.deliveries[0].request_id


async def test_crash_between_reply_and_record_sends_no_second_coupon(rig: Rig) -> None:
    line = await rig.service.line()
    real_reply = line.reply

    async def reply_then_die(*args: Any, **kwargs: Any) -> Any:
        await real_reply(*args, **kwargs)
        raise Crash

    line.reply = reply_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await deliver_welcome(rig.ctx, rig.request(31, token=True))
    await rig.service.aclose()
    service = rig.restart()
    assert await service.recover() == 1
    await rig.drain()
    assert rig.row(31).state is LedgerState.UNKNOWN
    assert len(rig.emulator.deliveries) == 1


async def test_crash_after_claim_before_anything_is_sent_recovers_to_a_push(rig: Rig) -> None:
    service = rig.service

    async def die(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    service._queue_push = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await deliver_welcome(rig.ctx, rig.request(32))
    assert rig.row(32).state is LedgerState.CLAIMED
    restarted = rig.restart()
    await restarted.recover()
    await rig.drain()
    assert rig.row(32).state is LedgerState.SENT
    assert len(rig.emulator.deliveries) == 1


# ------------------------------------------------------------------------------ budget and quota


@pytest.mark.parametrize("rig", [{"quota": 3}], indirect=True)
async def test_quota_exhaustion_mid_campaign_stops_before_line_refuses(rig: Rig) -> None:
    for n in range(40, 46):
        await deliver_welcome(rig.ctx, rig.request(n))
    await rig.drain()
    states = [rig.row(n).state for n in range(40, 46)]
    assert states == [LedgerState.SENT] * 3 + [LedgerState.HELD] * 3
    assert rig.emulator.total_usage == 3
    assert len(rig.emulator.deliveries) == 3
    reason = campaign_stop_blocking(rig.db, "welcome", local_month(T0, "Asia/Taipei"))
    assert reason == "account quota spent (3/3)"
    assert rig.ctx.health.get("coupons").level is Level.AMBER  # type: ignore[union-attr]


@pytest.mark.parametrize("rig", [{"quota": 10, "config": {"quota_cache_s": 3600}}], indirect=True)
async def test_quota_spent_elsewhere_meets_the_monthly_limit_429(rig: Rig) -> None:
    await deliver_welcome(rig.ctx, rig.request(50))
    await rig.drain()  # caches the quota: 1 of 10 used
    rig.emulator.set_quota(usage=10)  # the shop's own broadcasts spent the rest
    await deliver_welcome(rig.ctx, rig.request(51))
    await rig.drain()
    assert rig.row(51).state is LedgerState.HELD
    reason = campaign_stop_blocking(rig.db, "welcome", local_month(T0, "Asia/Taipei"))
    assert reason == "LINE monthly message limit reached"


@pytest.mark.parametrize("rig", [{"config": {"monthly_budget": 2}}], indirect=True)
async def test_campaign_budget_caps_pushes_but_not_replies(rig: Rig) -> None:
    for n in range(60, 63):
        await deliver_welcome(rig.ctx, rig.request(n))
    replied = await deliver_welcome(rig.ctx, rig.request(63, token=True))
    await rig.drain()
    assert [rig.row(n).state for n in range(60, 63)] == [LedgerState.SENT] * 2 + [LedgerState.HELD]
    assert replied.status is DeliveryStatus.REPLIED
    assert rig.emulator.total_usage == 2


# ------------------------------------------------------------------------------ concurrency


async def test_1000_concurrent_conversions_for_200_users_give_one_coupon_each(rig: Rig) -> None:
    users = list(range(100, 300))
    requests = []
    for n, copy in itertools.product(users, range(5)):
        # Every other user's conversion carries a fresh reply token on some copies.
        requests.append(rig.request(n, token=(n % 2 == 0 and copy % 2 == 0)))
    results = await asyncio.gather(*(deliver_welcome(rig.ctx, r) for r in requests))
    await rig.drain(rounds=200)
    assert len(results) == 1000
    per_user = {user(n): 0 for n in users}
    for delivery in rig.emulator.deliveries:
        per_user[delivery.to] += 1
    assert set(per_user.values()) == {1}
    codes: dict[str, set[str | None]] = {}
    for request_, result in zip(requests, results, strict=True):
        codes.setdefault(request_.line_user_id, set()).add(result.code)
    assert all(len(c) == 1 and None not in c for c in codes.values())  # one code per user
    # A duplicate carrying a fresh token may take over a push not yet tried (a free reply).
    assert {r.status for r in results} <= {
        DeliveryStatus.REPLIED,
        DeliveryStatus.QUEUED,
        DeliveryStatus.DUPLICATE,
    }
    assert all(rig.row(n).state is LedgerState.SENT for n in users)
    assert sum(1 for k in kinds(rig) if k.startswith("coupon_")) == 200


# ------------------------------------------------------------------------------ the component


async def test_running_component_drains_pushes_as_they_are_queued(rig: Rig) -> None:
    task = asyncio.create_task(rig.service.run())
    try:
        for _ in range(1000):  # up to 10 s on a loaded machine
            if rig.ctx.health.get("coupons") is not None:
                break
            await asyncio.sleep(0.01)
        assert rig.ctx.health.get("coupons").level is Level.GREEN  # type: ignore[union-attr]
        await deliver_welcome(rig.ctx, rig.request(70))
        for _ in range(1000):  # up to 10 s on a loaded machine
            if rig.emulator.deliveries:
                break
            await asyncio.sleep(0.01)
        assert [d.to for d in rig.emulator.deliveries] == [user(70)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("rig", [{"config": {}}], indirect=True)
async def test_without_a_token_coupons_wait_and_health_says_why(rig: Rig) -> None:
    line = rig.ctx.config.line.model_copy(update={"channel_access_token": SecretStr("")})
    rig.ctx.config = rig.ctx.config.model_copy(update={"line": line})
    service = rig.restart()
    task = asyncio.create_task(service.run())
    try:
        result = await deliver_welcome(rig.ctx, rig.request(71, token=True))
        for _ in range(1000):  # up to 10 s on a loaded machine
            if rig.ctx.health.get("coupons") is not None:
                break
            await asyncio.sleep(0.01)
        health = rig.ctx.health.get("coupons")
        assert health is not None and health.level is Level.AMBER and "channel_access_token" in health.detail
        assert result.status is DeliveryStatus.QUEUED
        assert rig.emulator.deliveries == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# ------------------------------------------------------------------------------ LINE coupon API


async def test_coupon_api_creates_one_line_coupon_and_attaches_it(rig: Rig) -> None:
    campaign = rig.ctx.config.campaigns[0].model_copy(update={"coupon_api": True, "discount_twd": 50})
    rig.ctx.config = rig.ctx.config.model_copy(update={"campaigns": [campaign]})
    rig.restart()
    await deliver_welcome(rig.ctx, rig.request(80, token=True))
    rig.restart()  # the created coupon id survives a restart (settings table)
    await deliver_welcome(rig.ctx, rig.request(81))
    await rig.drain()
    (coupon,) = rig.emulator._coupons.values()
    assert coupon["reward"]["priceInfo"]["fixedAmount"] == 50
    assert coupon["timezone"] == "ASIA_TAIPEI"
    for delivery in rig.emulator.deliveries:
        assert [m["type"] for m in delivery.messages] == ["coupon", "flex"]
        assert delivery.messages[0]["couponId"] == coupon["couponId"]


async def test_coupon_api_refusal_still_delivers_the_flex_card(rig: Rig) -> None:
    campaign = rig.ctx.config.campaigns[0].model_copy(update={"coupon_api": True})
    rig.ctx.config = rig.ctx.config.model_copy(update={"campaigns": [campaign]})
    rig.restart()
    rig.emulator.inject(Fault(endpoint="coupon", kind="503"))  # the coupon create call fails
    result = await deliver_welcome(rig.ctx, rig.request(82, token=True))
    assert result.status is DeliveryStatus.REPLIED
    assert [m["type"] for m in rig.emulator.deliveries[0].messages] == ["flex"]


async def test_crash_before_the_reply_left_retries_it_at_restart(rig: Rig) -> None:
    line = await rig.service.line()

    async def die_before_sending(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    line.reply = die_before_sending  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await deliver_welcome(rig.ctx, rig.request(33, token=True))
    assert rig.row(33).state is LedgerState.REPLYING
    rig.clock.now += 5  # a quick systemd restart: the token is still fresh
    service = rig.restart()
    await service.recover()
    await rig.drain()
    assert rig.row(33).state is LedgerState.SENT
    assert [d.via for d in rig.emulator.deliveries] == ["reply"]


async def test_a_later_fresh_token_replaces_a_push_not_yet_tried(rig: Rig) -> None:
    first = await deliver_welcome(rig.ctx, rig.request(90))  # no token: a push is queued
    second = await deliver_welcome(rig.ctx, rig.request(90, token=True))  # before the worker ran
    await rig.drain()
    assert (first.status, second.status) == (DeliveryStatus.QUEUED, DeliveryStatus.REPLIED)
    assert second.code == first.code
    assert [d.via for d in rig.emulator.deliveries] == ["reply"]
    assert rig.emulator.total_usage == 0  # the paid push was saved


async def test_a_fresh_token_after_the_push_was_tried_is_a_duplicate(rig: Rig) -> None:
    rig.emulator.inject(Fault(kind="503"))
    await deliver_welcome(rig.ctx, rig.request(91))
    await rig.service.drain_once()  # tried once, waiting for its retry
    again = await deliver_welcome(rig.ctx, rig.request(91, token=True))
    await rig.drain()
    assert again.status is DeliveryStatus.DUPLICATE
    assert [d.via for d in rig.emulator.deliveries] == ["push"]


async def test_retry_key_older_than_23h_is_never_resent(rig: Rig) -> None:
    rig.emulator.inject(Fault(kind="500", after_accept=True))  # LINE has it; the answer was lost
    await deliver_welcome(rig.ctx, rig.request(92))
    await rig.service.drain_once()
    rig.clock.now += 24 * 3600  # offline for a day: LINE has forgotten the key by now
    await rig.drain()
    row = rig.row(92)
    assert row.state is LedgerState.UNKNOWN
    assert "23 h" in row.error
    assert len(rig.emulator.deliveries) == 1  # a resend would have been a second coupon


async def test_quota_check_failure_waits_and_says_so(rig: Rig) -> None:
    rig.emulator.inject(Fault(endpoint="quota", kind="503"))
    await deliver_welcome(rig.ctx, rig.request(93))
    await rig.service.drain_once()
    health = rig.ctx.health.get("coupons")
    assert health is not None and health.level is Level.AMBER and "quota" in health.detail
    assert rig.emulator.deliveries == []
    await rig.drain()
    assert rig.row(93).state is LedgerState.SENT
    assert rig.ctx.health.get("coupons").level is Level.GREEN  # type: ignore[union-attr]


async def test_a_long_line_outage_does_not_bury_the_push(rig: Rig) -> None:
    rig.emulator.inject(*[Fault(kind="503") for _ in range(14)])  # more failures than outbox attempts
    await deliver_welcome(rig.ctx, rig.request(94))
    await rig.drain(rounds=60)
    row = rig.row(94)
    assert (row.state, row.attempts) == (LedgerState.SENT, 15)
    assert await rig.outbox.dead_letters(PUSH_STREAM) == []
    assert [d.retry_key for d in rig.emulator.deliveries] == [row.retry_key]


async def test_401_refreshes_the_token_and_resends_at_once(rig: Rig) -> None:
    rig.emulator.access_tokens = {"rotated"}  # the configured "tok" was revoked
    issued: list[str] = []

    async def source() -> str:
        issued.append("rotated")
        return "rotated"

    rig.retired.append(rig.service)
    rig.service = CouponService(rig.ctx, outbox=rig.outbox, sleep=_no_sleep, token_source=source)
    replied = await deliver_welcome(rig.ctx, rig.request(95, token=True))
    await deliver_welcome(rig.ctx, rig.request(96))
    await rig.service.drain_once()  # the first push after the refresh goes out without waiting
    await rig.drain()
    assert replied.status is DeliveryStatus.REPLIED
    assert sorted(d.via for d in rig.emulator.deliveries) == ["push", "reply"]
    assert issued == ["rotated"]  # refreshed once, on the reply's 401
    health = rig.ctx.health.get("coupons")
    assert health is not None and health.level is Level.GREEN


async def test_401_with_a_source_that_has_nothing_new_alerts(rig: Rig) -> None:
    rig.emulator.access_tokens = {"rotated"}

    async def source() -> str:
        return "tok"  # the same, rejected token

    rig.retired.append(rig.service)
    rig.service = CouponService(rig.ctx, outbox=rig.outbox, sleep=_no_sleep, token_source=source)
    await deliver_welcome(rig.ctx, rig.request(97))
    await rig.service.drain_once()
    assert rig.ctx.health.get("coupons").level is Level.RED  # type: ignore[union-attr]
    assert rig.row(97).state is LedgerState.QUEUED


async def test_401_on_the_push_path_refreshes_too(rig: Rig) -> None:
    rig.emulator.access_tokens = {"rotated"}

    async def source() -> str:
        return "rotated"

    rig.retired.append(rig.service)
    rig.service = CouponService(rig.ctx, outbox=rig.outbox, sleep=_no_sleep, token_source=source)
    await deliver_welcome(rig.ctx, rig.request(98))
    await rig.service.drain_once()  # quota check: 401 -> refreshed, released for now
    await rig.service.drain_once()  # pushed with the new token
    assert [d.via for d in rig.emulator.deliveries] == ["push"]
    assert rig.row(98).state is LedgerState.SENT
    assert rig.ctx.health.get("coupons").level is Level.GREEN  # type: ignore[union-attr]


async def test_a_rate_limit_holds_the_rest_of_the_batch(rig: Rig) -> None:
    for n in (100, 101, 102):
        await deliver_welcome(rig.ctx, rig.request(n))
    rig.emulator.inject(Fault(kind="rate_limit"))
    await rig.service.drain_once()
    pushes_tried = rig.emulator.requests_seen - 2  # the quota check is two requests
    assert pushes_tried == 1  # the two others were not sent into the 429
    await rig.drain()
    assert sorted(d.to for d in rig.emulator.deliveries) == [user(100), user(101), user(102)]
