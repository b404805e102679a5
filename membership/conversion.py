"""Friend conversions on the device: a relayed `line_event` becomes a recorded conversion.

Owns `handle_line_event(ctx, envelope_data)`, which the MQTT downlink consumer (`agent/sync/`)
calls for each `down/line_event` envelope, the `conversions` and `binding_rejections` tables and
the outbox stream `conversion`.

Flow: find the binding token in the shopper's message (or an account-link nonce), verify it
with this store's key (pure `membership.binding.verify_token`), record the conversion in the state DB
(one per sale: the unique key is store, device, order), put it in the outbox (critical, deduped
by sale), and show the "joined" screen if that sale's QR is still on the display. Rejected tokens
(forged, expired, wrong store, replayed) change nothing but their counter.

Idempotent: the same webhook event delivered twice is a DUPLICATE, re-queued under the same
outbox dedupe key, so a crash between the DB commit and the outbox put loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from base.statedb import StateDB
from membership.binding import BindingClaims, BindingError, Rejection, find_token, phone_hash, verify_token
from membership.context import MembershipContext
from membership.event_time import event_time

if TYPE_CHECKING:
    from membership.conversion_consumer import ConversionConsumer

__all__ = [
    "LINE_INBOX_STREAM",
    "Conversion",
    "ConversionConsumer",
    "ConversionResult",
    "ConversionStatus",
    "JoinedScreen",
    "SaleFacts",
    "SaleLookup",
    "after_conversion",
    "handle_line_event",
    "record_conversion_blocking",
    "rejection_counts_blocking",
    "verify_on_device_blocking",
]

log = logging.getLogger(__name__)

STREAM = "conversion"

# The tables are the migrations' (agent/migrations/versions/0500_conversion.py): `conversions`,
# one row per sale (unique on store, device, order), and `binding_rejections`, one counter per
# reason. Each binding message runs these statements on a `StateDB` transaction's connection.
_SALE = "store_id = :store_id AND device_id = :device_id AND order_id = :order_id"
_SELECT_EXISTING = f"SELECT webhook_event_id, line_user_id FROM conversions WHERE {_SALE}"
_SELECT_EXISTS = f"SELECT id FROM conversions WHERE {_SALE}"
# The columns a `Conversion` is built from, in the table's order (all but `id`).
_CONVERSION_COLUMNS = (
    "store_id",
    "device_id",
    "order_id",
    "line_user_id",
    "amount_twd",
    "member_phone_hash",
    "is_new_follower",
    "token_issued_at",
    "converted_at",
    "recorded_at",
    "webhook_event_id",
    "reply_token",
)
_SELECT_STORED = f"SELECT {', '.join(_CONVERSION_COLUMNS)} FROM conversions WHERE {_SALE}"
_INSERT_CONVERSION = (
    f"INSERT INTO conversions ({', '.join(_CONVERSION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _CONVERSION_COLUMNS)})"
)
# One statement, so two first rejections for the same reason at once cannot collide.
_COUNT_REJECTION = (
    "INSERT INTO binding_rejections (reason, count, last_at) VALUES (?, 1, ?)"
    " ON CONFLICT (reason) DO UPDATE SET count = count + 1, last_at = excluded.last_at"
)
_SELECT_REJECTION_COUNTS = "SELECT reason, count FROM binding_rejections"


def _sale(store_id: str, device_id: str, order_id: str) -> dict[str, str]:
    return {"store_id": store_id, "device_id": device_id, "order_id": order_id}


class ConversionStatus(StrEnum):
    RECORDED = "recorded"  # a new conversion
    DUPLICATE = "duplicate"  # the same webhook event again (redelivery): nothing new
    REJECTED = "rejected"  # a token that did not verify (see `reason`), counted
    IGNORED = "ignored"  # not a binding message (no token): not this handler's business


@dataclass(frozen=True, kw_only=True)
class SaleFacts:
    """What the payment journal knows about a sale: the amount and the member phone, already
    hashed (`member_phone_hash`) or raw (`member_phone`, hashed here and never stored)."""

    amount_twd: int
    member_phone_hash: str | None = None
    member_phone: str | None = None


class SaleLookup(Protocol):
    """`ctx.services["sale_lookup"]`: the agent registers one over the payment journal
    (`agent.wiring.membership.JournalSaleLookup`)."""

    async def sale_facts(self, order_id: str) -> SaleFacts | None: ...


@dataclass(frozen=True, kw_only=True)
class Conversion:
    """One shopper who became a friend through one sale's binding QR."""

    store_id: str
    device_id: str
    order_id: str
    line_user_id: str
    amount_twd: int | None
    member_phone_hash: str | None
    is_new_follower: bool
    token_issued_at: int
    converted_at: float  # when the shopper sent the message (LINE's timestamp), unix seconds
    recorded_at: float
    webhook_event_id: str | None
    reply_token: str | None  # for the welcome coupon's free reply; never sent upstream
    reply_token_received_at: float | None

    def upstream(self) -> dict[str, Any]:
        """The outbox payload: everything but the reply token."""
        data = asdict(self)
        del data["reply_token"], data["reply_token_received_at"]
        return data


@dataclass(frozen=True, kw_only=True)
class ConversionResult:
    status: ConversionStatus
    reason: str = ""
    conversion: Conversion | None = None


# ---------------------------------------------------------------- pure parsing


@dataclass(frozen=True, kw_only=True)
class _BindingMessage:
    token: str
    line_user_id: str
    webhook_event_id: str | None
    sent_at: float
    reply_token: str | None
    received_at: float | None
    new_follower: bool


def _parse(envelope_data: dict[str, Any]) -> _BindingMessage | None:
    """The binding message in a relayed envelope's data, or None if there is none."""
    if "event" not in envelope_data and isinstance(envelope_data.get("data"), dict):
        envelope_data = envelope_data["data"]  # a whole envelope was passed
    event = envelope_data.get("event")
    if not isinstance(event, dict):
        return None
    source = event.get("source")
    user = source.get("userId") if isinstance(source, dict) else None
    if not isinstance(user, str) or not user:
        return None
    token: str | None = None
    if event.get("type") == "message":
        message = event.get("message")
        if isinstance(message, dict) and message.get("type") == "text":
            token = find_token(str(message.get("text", "")))
    elif event.get("type") == "accountLink":
        link = event.get("link")
        if isinstance(link, dict) and link.get("result") == "ok":
            token = find_token(str(link.get("nonce", "")))
    if token is None:
        return None
    relay = envelope_data.get("relay")
    relay = relay if isinstance(relay, dict) else {}
    sent_at = event_time(event.get("timestamp"), field="event.timestamp", milliseconds=True) or 0.0
    # a reply token is only usable while fresh: without any time for it, it is dropped
    received_at = event_time(relay.get("received_at"), field="relay.received_at") or (sent_at or None)
    reply = event.get("replyToken")
    return _BindingMessage(
        token=token,
        line_user_id=user,
        webhook_event_id=str(event["webhookEventId"]) if event.get("webhookEventId") else None,
        sent_at=sent_at,
        reply_token=reply if isinstance(reply, str) and received_at is not None else None,
        received_at=received_at if isinstance(reply, str) else None,
        new_follower=relay.get("new_follower") is True,
    )


# ---------------------------------------------------------------- database (run in a thread)


def record_conversion_blocking(db: StateDB, conversion: Conversion) -> ConversionStatus | Rejection:
    """Insert the conversion unless its sale already has one (then DUPLICATE or ALREADY_USED)."""
    with db.transaction() as conn:
        existing = conn.execute(
            _SELECT_EXISTING, _sale(conversion.store_id, conversion.device_id, conversion.order_id)
        ).fetchone()
        if existing is not None:
            webhook_event_id, _line_user_id = existing
            same_event = conversion.webhook_event_id is not None and (
                webhook_event_id == conversion.webhook_event_id
            )
            if same_event:
                return ConversionStatus.DUPLICATE
            _count_blocking(conn, Rejection.ALREADY_USED, conversion.recorded_at)
            return Rejection.ALREADY_USED
        values = {k: v for k, v in asdict(conversion).items() if k != "reply_token_received_at"}
        conn.execute(_INSERT_CONVERSION, values)
    return ConversionStatus.RECORDED


def _count_blocking(conn: sqlite3.Connection, reason: Rejection, now: float) -> None:
    conn.execute(_COUNT_REJECTION, (reason.value, now))


def conversion_exists_blocking(db: StateDB, store_id: str, device_id: str, order_id: str) -> bool:
    with db.transaction() as conn:
        row = conn.execute(_SELECT_EXISTS, _sale(store_id, device_id, order_id)).fetchone()
    return row is not None


def verify_on_device_blocking(
    db: StateDB | None, token: str, *, key: bytes, store_id: str, device_id: str, now: float
) -> BindingClaims | Rejection:
    """What this device says of a token if a shopper sent it now: `verify_token`'s checks, then
    "already used" when its sale has a conversion (the handler's unique key). `shopedge binding
    verify` answers with this, so it never calls "valid" a token the device would reject;
    without a state DB (`db` None) nothing is used yet."""
    verdict = verify_token(token, key=key, store_id=store_id, device_id=device_id, now=now)
    if isinstance(verdict, Rejection) or db is None:
        return verdict
    if conversion_exists_blocking(db, verdict.store_id, verdict.device_id, verdict.order_id):
        return Rejection.ALREADY_USED
    return verdict


def count_rejection_blocking(db: StateDB, reason: Rejection, now: float) -> None:
    with db.transaction() as conn:
        _count_blocking(conn, reason, now)


def rejection_counts_blocking(db: StateDB) -> dict[str, int]:
    with db.transaction() as conn:
        rows = conn.execute(_SELECT_REJECTION_COUNTS).fetchall()
    return {str(reason): int(count) for reason, count in rows}


def stored_conversion_blocking(
    db: StateDB, store_id: str, device_id: str, order_id: str
) -> Conversion | None:
    with db.transaction() as conn:
        row = conn.execute(_SELECT_STORED, _sale(store_id, device_id, order_id)).fetchone()
    if row is None:
        return None
    data = dict(zip(_CONVERSION_COLUMNS, row, strict=True))
    data["is_new_follower"] = bool(data["is_new_follower"])
    return Conversion(**data, reply_token_received_at=None)


# ---------------------------------------------------------------- the handler


async def handle_line_event(ctx: MembershipContext, envelope_data: dict[str, Any]) -> ConversionResult:
    """Handle one relayed LINE event (the `data` of a `down/line_event` envelope).

    Raises:
        RuntimeError: no outbox in `ctx.services` (the daemon always registers one); the DB
            already holds the conversion, and a redelivery re-queues it.
    """
    message = _parse(envelope_data)
    if message is None:
        return ConversionResult(status=ConversionStatus.IGNORED, reason="no_binding_token")
    config = ctx.config
    now = ctx.wall_clock()
    verdict = verify_token(
        message.token,
        key=config.binding.key.get_secret_value().encode(),
        store_id=config.device.store_id,
        device_id=config.device.device_id,
        now=now,
    )
    if isinstance(verdict, Rejection):
        await asyncio.to_thread(count_rejection_blocking, ctx.db, verdict, now)
        log.warning("binding token rejected", extra={"reason": verdict.value, "user": message.line_user_id})
        return ConversionResult(status=ConversionStatus.REJECTED, reason=verdict.value)

    conversion = await _build(ctx, verdict, message, now)
    outcome = await asyncio.to_thread(record_conversion_blocking, ctx.db, conversion)
    if outcome is Rejection.ALREADY_USED:
        log.warning("binding token replayed", extra={"order_id": verdict.order_id})
        return ConversionResult(status=ConversionStatus.REJECTED, reason=outcome.value)
    if outcome is ConversionStatus.DUPLICATE:
        stored = await asyncio.to_thread(
            stored_conversion_blocking, ctx.db, verdict.store_id, verdict.device_id, verdict.order_id
        )
        conversion = stored or conversion
    await _enqueue(ctx, conversion)
    if outcome is ConversionStatus.RECORDED:
        log.info(
            "friend conversion recorded",
            extra={"order_id": conversion.order_id, "new_follower": conversion.is_new_follower},
        )
        await _show_joined(ctx, message.token, verdict, conversion.amount_twd, now)
        return ConversionResult(status=ConversionStatus.RECORDED, conversion=conversion)
    return ConversionResult(
        status=ConversionStatus.DUPLICATE, reason="same_webhook_event", conversion=conversion
    )


async def _build(
    ctx: MembershipContext, claims: BindingClaims, message: _BindingMessage, now: float
) -> Conversion:
    facts: SaleFacts | None = None
    lookup = ctx.services.get("sale_lookup")
    if lookup is not None:
        facts = await lookup.sale_facts(claims.order_id)
    phone: str | None = facts.member_phone_hash if facts is not None else None
    if facts is not None and facts.member_phone and phone is None:
        try:
            phone = phone_hash(facts.member_phone, ctx.config.binding.phone_salt.get_secret_value())
        except BindingError as exc:
            log.warning("member phone not hashed", extra={"error": str(exc)})
    return Conversion(
        store_id=claims.store_id,
        device_id=claims.device_id,
        order_id=claims.order_id,
        line_user_id=message.line_user_id,
        amount_twd=facts.amount_twd if facts else None,
        member_phone_hash=phone,
        is_new_follower=message.new_follower,
        token_issued_at=claims.issued_at,
        converted_at=message.sent_at or now,
        recorded_at=now,
        webhook_event_id=message.webhook_event_id,
        reply_token=message.reply_token,
        reply_token_received_at=message.received_at,
    )


async def _enqueue(ctx: MembershipContext, conversion: Conversion) -> None:
    outbox = ctx.services.get("outbox")
    if outbox is None:
        raise RuntimeError("no outbox registered: conversion kept in the DB, not yet queued upstream")
    await outbox.put(  # durability defaults to critical: never shed, never expired
        STREAM,
        conversion.upstream(),
        dedupe_key=f"conversion:{conversion.store_id}:{conversion.device_id}:{conversion.order_id}",
    )


@dataclass(frozen=True, kw_only=True)
class JoinedScreen:
    """ "Welcome, you joined" on the customer display (the agent's screen port turns it into the
    display room's screen of the same name)."""

    amount_twd: int | None


async def _show_joined(
    ctx: MembershipContext, token: str, claims: BindingClaims, amount_twd: int | None, now: float
) -> None:
    """Show "joined" only while this sale's QR is still up: exactly, when the display tells us
    its current screen (`display.screen`); otherwise while the QR is younger than
    `binding.joined_window_s`."""
    display = ctx.services.get("screens")
    if display is None:
        return
    if hasattr(display, "screen"):
        binding = getattr(display.screen, "binding_url", None)
        if not (isinstance(binding, str) and token in binding):
            return
    elif now - claims.issued_at > ctx.config.binding.joined_window_s:
        return
    await display.show(JoinedScreen(amount_twd=amount_twd))


# ---------------------------------------------------------------- the component


# The outbox stream the sync downlink keeps relayed LINE events in before this consumer sees them.
LINE_INBOX_STREAM = "line_inbox"


async def after_conversion(ctx: MembershipContext, conversion: Conversion) -> None:
    """The funnel facts of a new conversion and the shopper's welcome coupon (membership.coupons).

    Both are idempotent on their side; a failure here is logged and never undoes the conversion
    (the coupon ledger and funnel are the coupons capability's to retry and report).
    """
    from membership.coupons import (
        Fact,
        FactKind,
        ServiceNotRunning,
        WelcomeRequest,
        deliver_welcome,
        record_fact,
    )

    kinds = [FactKind.BINDING_MESSAGE, FactKind.BOUND_MEMBER]
    if conversion.is_new_follower:
        kinds.append(FactKind.NEW_FRIEND)
    try:
        for kind in kinds:
            fact = Fact(
                kind=kind,
                store_id=conversion.store_id,
                device_id=conversion.device_id,
                at=conversion.converted_at,
                order_id=conversion.order_id,
                line_user_id=conversion.line_user_id,
                amount_twd=conversion.amount_twd,
            )
            await record_fact(ctx, fact)
    except Exception as exc:  # the funnel is a report: never block the coupon on it
        log.error("funnel facts not recorded", extra={"order_id": conversion.order_id, "error": str(exc)})
    request = WelcomeRequest(
        line_user_id=conversion.line_user_id,
        store_id=conversion.store_id,
        device_id=conversion.device_id,
        order_id=conversion.order_id,
        reply_token=conversion.reply_token,
        reply_token_received_at=conversion.reply_token_received_at,
        is_new_friend=conversion.is_new_follower,
    )
    try:
        delivery = await deliver_welcome(ctx, request)
    except ServiceNotRunning:
        log.info("welcome coupon not offered: the coupons service is not running")
        return
    except Exception as exc:
        log.error("welcome coupon failed", extra={"order_id": conversion.order_id, "error": str(exc)})
        return
    log.info("welcome coupon", extra={"order_id": conversion.order_id, "status": str(delivery.status)})


def __getattr__(name: str) -> Any:
    """`ConversionConsumer` lives in `membership.conversion_consumer` (this file's size limit);
    it is still importable from here, loaded on first use (it imports this module)."""
    if name == "ConversionConsumer":
        from membership.conversion_consumer import ConversionConsumer

        return ConversionConsumer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
