"""The device-side line_event handler on a real SQLite state DB and the real outbox: record once,
reject and count forgeries and replays, survive redeliveries and a missing outbox."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.config import ShopEdgeConfig, parse_config
from agent.context import AgentContext
from agent.db import current_heads, migrate, open_state_db, script_heads
from agent.wiring.membership import JournalSaleLookup
from base.statedb import StateDB
from emulators.messaging.webhooks import account_link_event, follow_event, new_user_id, text_message_event
from membership.binding import URL_PROMPT, BindingClaims, encode_token, issue_binding
from membership.conversion import (
    ConversionConsumer,
    ConversionStatus,
    JoinedScreen,
    SaleFacts,
    handle_line_event,
    rejection_counts_blocking,
)
from offline_queue import Outbox, Record

KEY = "s" * 32
NOW = 1_795_000_000.0


@dataclass
class Sales:
    facts: dict[str, SaleFacts]

    async def sale_facts(self, order_id: str) -> SaleFacts | None:
        return self.facts.get(order_id)


def make_config(store: str = "demo-store", device: str = "counter-1", key: str = KEY) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": store, "device_id": device},
            "binding": {"key": key, "phone_salt": "pepper"},
            "line": {"oa_basic_id": "@shopedge"},
        },
        environ={},
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    db = open_state_db(tmp_path / "state.db")
    migrate(db)
    yield db
    db.close()


@pytest.fixture
async def ctx(db: StateDB, tmp_path: Path) -> AsyncIterator[AgentContext]:
    ctx = AgentContext(config=make_config(), db=db, wall_clock=lambda: NOW + 60)
    outbox = await Outbox.open(tmp_path / "state.db")
    ctx.services["outbox"] = outbox
    ctx.services["sale_lookup"] = Sales({"A-1": SaleFacts(amount_twd=350, member_phone="0912-345-678")})
    yield ctx
    await outbox.close()


async def queued(ctx: AgentContext) -> list[Record]:
    """Every record in the outbox's conversion stream (leased, so a second call sees none)."""
    records: list[Record] = await ctx.services["outbox"].claim("conversion")
    return records


def envelope_data(event: dict[str, Any], **relay: Any) -> dict[str, Any]:
    return {"destination": "U" + "0" * 32, "event": event, "relay": {"received_at": NOW + 61, **relay}}


def token(order: str = "A-1", *, store: str = "demo-store", device: str = "counter-1", key: str = KEY) -> str:
    return issue_binding(make_config(store, device, key), order, NOW)[0]


def rows(db: StateDB) -> list[sqlite3.Row]:
    with db.transaction() as conn:
        cursor = conn.cursor()
        cursor.row_factory = sqlite3.Row  # this cursor's only: the pooled connection keeps tuples
        return cursor.execute("SELECT * FROM conversions").fetchall()


def table_names(db: StateDB) -> set[str]:
    with db.transaction() as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_valid_binding_is_recorded_once_and_queued(ctx: AgentContext, db: StateDB) -> None:
    user = new_user_id()
    event = text_message_event(user, URL_PROMPT + token(), timestamp_ms=int((NOW + 59) * 1000))
    result = await handle_line_event(ctx, envelope_data(event, new_follower=True))
    assert result.status is ConversionStatus.RECORDED
    conv = result.conversion
    assert conv is not None
    assert (conv.order_id, conv.line_user_id, conv.amount_twd, conv.is_new_follower) == (
        "A-1",
        user,
        350,
        True,
    )
    assert conv.reply_token == event["replyToken"] and conv.reply_token_received_at == NOW + 61
    assert conv.converted_at == NOW + 59 and conv.token_issued_at == int(NOW)
    assert conv.member_phone_hash is not None and len(conv.member_phone_hash) == 64
    [row] = rows(db)
    assert row["order_id"] == "A-1" and row["member_phone_hash"] == conv.member_phone_hash
    assert "0912" not in repr(tuple(row))
    [record] = await queued(ctx)
    assert record.durability == "critical"
    assert record.dedupe_key == "conversion:demo-store:counter-1:A-1"
    assert "reply_token" not in record.payload and record.payload["line_user_id"] == user
    assert record.payload["amount_twd"] == 350 and "0912" not in repr(record.payload)


async def test_redelivered_envelope_is_a_duplicate_requeued_under_the_same_key(
    ctx: AgentContext, db: StateDB
) -> None:
    event = text_message_event(new_user_id(), URL_PROMPT + token())
    first = await handle_line_event(ctx, envelope_data(event))
    again = await handle_line_event(ctx, {"id": "x", "kind": "line_event", "data": envelope_data(event)})
    assert (first.status, again.status) == (ConversionStatus.RECORDED, ConversionStatus.DUPLICATE)
    assert len(rows(db)) == 1
    [record] = await queued(ctx)  # the outbox deduped the second put by its key
    assert record.payload == first.conversion.upstream()  # type: ignore[union-attr]
    assert rejection_counts_blocking(db) == {}


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: token(key="another-store-key"), "bad_signature"),
        (lambda: token(store="other-store"), "wrong_store"),
        (lambda: token(device="counter-2"), "wrong_device"),
        (
            lambda: encode_token(
                BindingClaims(
                    store_id="demo-store",
                    device_id="counter-1",
                    order_id="A-1",
                    issued_at=int(NOW) - 1800,
                    ttl_minutes=30,
                ),
                KEY.encode(),
            ),
            "expired",
        ),
    ],
)
async def test_bad_tokens_change_nothing_but_their_counter(
    ctx: AgentContext, db: StateDB, make_token: Any, reason: str
) -> None:
    for _ in range(2):
        result = await handle_line_event(
            ctx, envelope_data(text_message_event(new_user_id(), URL_PROMPT + make_token()))
        )
        assert (result.status, result.reason) == (ConversionStatus.REJECTED, reason)
    assert rows(db) == [] and await queued(ctx) == []
    assert rejection_counts_blocking(db) == {reason: 2}


async def test_replay_by_another_event_is_rejected_and_counted(ctx: AgentContext, db: StateDB) -> None:
    text = URL_PROMPT + token()
    first = await handle_line_event(ctx, envelope_data(text_message_event(new_user_id(), text)))
    replay = await handle_line_event(ctx, envelope_data(text_message_event(new_user_id(), text)))
    assert first.status is ConversionStatus.RECORDED
    assert (replay.status, replay.reason) == (ConversionStatus.REJECTED, "already_used")
    assert len(rows(db)) == 1 and len(await queued(ctx)) == 1
    assert rejection_counts_blocking(db) == {"already_used": 1}


async def test_events_without_a_token_are_ignored(ctx: AgentContext, db: StateDB) -> None:
    for event in (
        follow_event(new_user_id()),
        text_message_event(new_user_id(), "hello"),
        account_link_event(new_user_id(), token(), ok=False),
        {"type": "message"},
    ):
        assert (await handle_line_event(ctx, envelope_data(event))).status is ConversionStatus.IGNORED
    assert (await handle_line_event(ctx, {"nothing": 1})).status is ConversionStatus.IGNORED
    assert rows(db) == [] and rejection_counts_blocking(db) == {}


async def test_account_link_nonce_carries_the_token(ctx: AgentContext, db: StateDB) -> None:
    result = await handle_line_event(ctx, envelope_data(account_link_event(new_user_id(), token("B-9"))))
    assert result.status is ConversionStatus.RECORDED
    assert result.conversion is not None and result.conversion.amount_twd is None  # no sale facts for B-9


async def test_missing_outbox_loses_nothing(ctx: AgentContext, db: StateDB) -> None:
    outbox = ctx.services.pop("outbox")
    event = text_message_event(new_user_id(), URL_PROMPT + token())
    with pytest.raises(RuntimeError, match="outbox"):
        await handle_line_event(ctx, envelope_data(event))
    assert len(rows(db)) == 1
    ctx.services["outbox"] = outbox
    assert await queued(ctx) == []
    result = await handle_line_event(ctx, envelope_data(event))  # the consumer's redelivery
    assert result.status is ConversionStatus.DUPLICATE
    [record] = await queued(ctx)
    assert record.payload["order_id"] == "A-1"


def test_migration_from_empty_and_from_base(tmp_path: Path) -> None:
    fresh = open_state_db(tmp_path / "fresh.db")
    migrate(fresh)
    assert {"conversions", "binding_rejections"} <= table_names(fresh)
    assert current_heads(fresh) == script_heads()
    fresh.close()
    old = open_state_db(tmp_path / "old.db")
    migrate(old, "0002_agent_runs")
    assert "conversions" not in table_names(old)
    migrate(old)
    assert "0500_conversion" in current_heads(old)
    with old.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM conversions").fetchone() == (0,)
    old.close()


@dataclass
class Display:
    """The display service's contract surface: `show()` and the current `screen`."""

    screen: Any
    shown: list[Any] = field(default_factory=list)

    async def show(self, screen: Any) -> None:
        self.shown.append(screen)
        self.screen = screen


@dataclass
class BlindDisplay:
    """A display that does not say what it shows (only `show()`)."""

    shown: list[Any] = field(default_factory=list)

    async def show(self, screen: Any) -> None:
        self.shown.append(screen)


async def test_joined_screen_only_while_that_sale_is_on_screen(ctx: AgentContext) -> None:
    screens = pytest.importorskip("drivers.display.screens")
    tok, url = issue_binding(ctx.config, "A-1", NOW)
    other_url = issue_binding(ctx.config, "B-2", NOW)[1]
    display = Display(screen=screens.PaidScreen(amount_twd=350, binding_url=other_url))
    ctx.services["screens"] = display
    event = text_message_event(new_user_id(), URL_PROMPT + token("B-2"))
    assert (await handle_line_event(ctx, envelope_data(event))).status is ConversionStatus.RECORDED
    assert display.shown == [JoinedScreen(amount_twd=None)]
    display.screen = screens.PaidScreen(amount_twd=350, binding_url=url)
    display.shown.clear()
    event = text_message_event(new_user_id(), URL_PROMPT + tok)
    assert (await handle_line_event(ctx, envelope_data(event))).status is ConversionStatus.RECORDED
    assert display.shown == [JoinedScreen(amount_twd=350)]
    display.screen = screens.IdleScreen(store_name="x")
    display.shown.clear()
    event = text_message_event(new_user_id(), URL_PROMPT + token("C-3"))
    assert (await handle_line_event(ctx, envelope_data(event))).status is ConversionStatus.RECORDED
    assert display.shown == []


async def test_joined_screen_by_age_when_the_display_cannot_tell(ctx: AgentContext) -> None:
    display = BlindDisplay()
    ctx.services["screens"] = display
    young = issue_binding(ctx.config, "A-1", NOW + 60 - 100)[0]
    old = issue_binding(ctx.config, "D-4", NOW + 60 - 121)[0]
    for tok in (young, old):
        result = await handle_line_event(
            ctx, envelope_data(text_message_event(new_user_id(), URL_PROMPT + tok))
        )
        assert result.status is ConversionStatus.RECORDED
    assert display.shown == [JoinedScreen(amount_twd=350)]


class Inbox:
    """The sync downlink inbox's consumer side: `await get()` returns the next envelope."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()


async def test_consumer_without_downlink_is_amber(ctx: AgentContext) -> None:
    task = asyncio.create_task(ConversionConsumer(ctx).run())
    await asyncio.sleep(0)
    health = ctx.health.get("conversion")
    assert health is not None and health.level == "amber"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_reply_token_age_falls_back_to_the_event_time(ctx: AgentContext) -> None:
    event = text_message_event(new_user_id(), URL_PROMPT + token(), timestamp_ms=int((NOW + 30) * 1000))
    result = await handle_line_event(ctx, {"event": event})  # no relay annotations at all
    assert result.conversion is not None
    assert result.conversion.reply_token == event["replyToken"]
    assert result.conversion.reply_token_received_at == NOW + 30
    assert result.conversion.is_new_follower is False


async def test_joined_on_the_real_display_service(ctx: AgentContext) -> None:
    from agent.wiring.display import build_display
    from drivers.display import screens as display_screens
    from drivers.display.screens import IdleScreen, PaidScreen

    service = build_display(ctx)  # registers ctx.services["display"] and its screen port
    assert ctx.services["display"] is service and isinstance(service.screen, IdleScreen)
    tok, url = issue_binding(ctx.config, "A-1", NOW)
    await service.show(PaidScreen(amount_twd=350, binding_url=url))
    result = await handle_line_event(ctx, envelope_data(text_message_event(new_user_id(), URL_PROMPT + tok)))
    assert result.status is ConversionStatus.RECORDED
    shown: object = service.screen
    assert shown == display_screens.JoinedScreen(amount_twd=350)


async def test_sale_facts_come_from_the_payment_journal(db: StateDB, tmp_path: Path) -> None:
    from pos_bridge.journal import Journal
    from pos_bridge.payment_flow import Method, Payment, State

    ctx = AgentContext(config=make_config(), db=db, wall_clock=lambda: NOW + 60)
    outbox = await Outbox.open(tmp_path / "state.db")
    ctx.services["outbox"] = outbox
    ctx.services["sale_lookup"] = JournalSaleLookup(db)  # what the agent's wiring registers
    journal = Journal(db, outbox=lambda: outbox, clock=lambda: NOW)
    payment = Payment(
        order_id="A-1",
        line_order_id="A-1",
        method=Method.QR,
        amount=420,
        currency="TWD",
        product_name="coffee",
        state=State.CREATED,
        created_at=NOW,
    )
    await journal.create(payment, phone_hash="f" * 64)
    try:
        event = text_message_event(new_user_id(), URL_PROMPT + token())
        result = await handle_line_event(ctx, envelope_data(event))
        assert result.conversion is not None
        assert (result.conversion.amount_twd, result.conversion.member_phone_hash) == (420, "f" * 64)
        assert await ctx.services["sale_lookup"].sale_facts("nope") is None
    finally:
        await outbox.close()


async def test_relayed_event_survives_a_restart_between_puback_and_conversion(
    ctx: AgentContext, db: StateDB
) -> None:
    """sync keeps each line_event in the outbox before the consumer sees it: a process that died
    after MQTT's PUBACK (the memory copy gone) still records the conversion at the next start."""
    from agent.sync import LINE_INBOX_STREAM, DownlinkInbox, Envelope, accept_line_event

    outbox = ctx.services["outbox"]
    event = text_message_event(new_user_id(), URL_PROMPT + token())
    envelope = Envelope(
        id="00000000-0000-4000-8000-00000000c4a5",
        kind="line_event",
        ts="2026-11-23T00:00:00.000Z",
        seq=1,
        data=envelope_data(event),
    )
    await accept_line_event(outbox, DownlinkInbox(), envelope)  # that inbox dies with the process
    await accept_line_event(outbox, DownlinkInbox(), envelope)  # MQTT redelivery: kept once
    assert await outbox.depth(LINE_INBOX_STREAM) == 1
    ctx.services["downlink"] = DownlinkInbox()  # the restarted agent's empty inbox
    consumer = ConversionConsumer(ctx)
    assert await consumer.sweep_durable() == 1
    assert consumer.counts == {"recorded": 1} and len(rows(db)) == 1
    assert await outbox.depth(LINE_INBOX_STREAM) == 0


async def test_memory_and_durable_copies_are_handled_once(ctx: AgentContext, db: StateDB) -> None:
    from agent.sync import LINE_INBOX_STREAM, DownlinkInbox, Envelope, accept_line_event

    inbox = DownlinkInbox()
    ctx.services["downlink"] = inbox
    forged = text_message_event(new_user_id(), URL_PROMPT + token(key="k" * 43))
    envelope = Envelope(
        id="00000000-0000-4000-8000-0000000f0f9e",
        kind="line_event",
        ts="2026-11-23T00:00:00.000Z",
        seq=1,
        data=envelope_data(forged),
    )
    consumer = ConversionConsumer(ctx)
    task = asyncio.create_task(consumer.run())
    try:
        await accept_line_event(ctx.services["outbox"], inbox, envelope)
        async with asyncio.timeout(20):
            while await ctx.services["outbox"].depth(LINE_INBOX_STREAM):  # noqa: ASYNC110 - polls a DB
                await asyncio.sleep(0.05)
        assert consumer.counts == {"rejected": 1}  # counted once, not once per copy
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
