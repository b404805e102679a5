"""The coupon ledger: one row per (campaign, LINE user), the local proof of "exactly one coupon".

Owns every read and write of `coupon_ledger` and `coupon_campaign_stops`. The primary key makes a
second claim for the same user fail atomically, across tasks, threads and restarts; state moves
only by conditional updates (`WHERE state IN (...)`), so two workers can never both record a
send. Every function here blocks on SQLite and ends in `_blocking`: call it via
`asyncio.to_thread`.

States: claimed -> replying -> sent | queued; queued -> sent | dead | held | unknown.
`held` = not sent because the budget or monthly limit stopped the campaign; `unknown` = LINE may
have delivered it but it can no longer be confirmed (never resent, so never a second coupon).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.dialects.sqlite import insert

from membership.coupons._tables import campaign_stops, ledger

__all__ = [
    "LedgerRow",
    "LedgerState",
    "RedeemStatus",
    "campaign_pushes_blocking",
    "campaign_stop_blocking",
    "claim_blocking",
    "get_blocking",
    "redeem_blocking",
    "release_blocking",
    "rows_in_states_blocking",
    "stop_campaign_blocking",
    "transition_blocking",
]


class LedgerState(StrEnum):
    CLAIMED = "claimed"
    REPLYING = "replying"
    QUEUED = "queued"
    SENT = "sent"
    DEAD = "dead"
    HELD = "held"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class LedgerRow:
    campaign: str
    line_user_id: str
    state: LedgerState
    channel: str | None
    code: str
    retry_key: str
    store_id: str
    device_id: str
    order_id: str | None
    reply_token: str | None
    reply_ambiguous: bool
    attempts: int
    first_push_at: float | None
    created_at: float
    sent_at: float | None
    month: str | None
    request_id: str | None
    error: str | None
    redeemed_at: float | None


def _row(mapping: Any) -> LedgerRow:
    data = dict(mapping)
    return LedgerRow(
        campaign=data["campaign"],
        line_user_id=data["line_user_id"],
        state=LedgerState(data["state"]),
        channel=data["channel"],
        code=data["code"],
        retry_key=data["retry_key"],
        store_id=data["store_id"],
        device_id=data["device_id"],
        order_id=data["order_id"],
        reply_token=data["reply_token"],
        reply_ambiguous=bool(data["reply_ambiguous"]),
        attempts=int(data["attempts"]),
        first_push_at=data["first_push_at"],
        created_at=data["created_at"],
        sent_at=data["sent_at"],
        month=data["month"],
        request_id=data["request_id"],
        error=data["error"],
        redeemed_at=data["redeemed_at"],
    )


# Statements used on every coupon event, built once: a reused statement keeps its cache key, so
# each call skips SQLAlchemy's construction, coercion and cache-key generation. INSERTs and the
# SET of an UPDATE take their columns from the parameter dict; `w_` names bind WHERE clauses (a
# bound name may not be a column name the UPDATE sets).
_COLUMNS = frozenset(ledger.c.keys())
_USER = (ledger.c.campaign == bindparam("w_campaign"), ledger.c.line_user_id == bindparam("w_user"))
_GET = select(ledger).where(*_USER)
_CLAIM = insert(ledger).on_conflict_do_nothing()
_TRANSITION = update(ledger).where(*_USER, ledger.c.state.in_(bindparam("w_states", expanding=True)))
_TRANSITION_UNATTEMPTED = _TRANSITION.where(ledger.c.attempts == 0)
_RELEASE = ledger.delete().where(
    *_USER, ledger.c.state == bindparam("w_state"), ledger.c.reply_ambiguous.is_(False)
)
_PUSHES = select(func.count()).where(
    ledger.c.campaign == bindparam("w_campaign"),
    ledger.c.month == bindparam("w_month"),
    ledger.c.channel == "push",
    ledger.c.state == LedgerState.SENT.value,
)
_STOP = insert(campaign_stops).on_conflict_do_nothing()
_STOPPED = select(campaign_stops.c.reason).where(
    campaign_stops.c.campaign == bindparam("w_campaign"), campaign_stops.c.month == bindparam("w_month")
)
_BY_CODE = select(ledger).where(ledger.c.code == bindparam("w_code"))
_REDEEM = update(ledger).where(ledger.c.code == bindparam("w_code"), ledger.c.redeemed_at.is_(None))


def get_blocking(engine: Engine, campaign: str, line_user_id: str) -> LedgerRow | None:
    with engine.connect() as conn:
        found = conn.execute(_GET, {"w_campaign": campaign, "w_user": line_user_id}).mappings().first()
    return _row(found) if found is not None else None


def claim_blocking(
    engine: Engine,
    *,
    campaign: str,
    line_user_id: str,
    code: str,
    retry_key: str,
    store_id: str,
    device_id: str,
    order_id: str | None,
    reply_token: str | None,
    now: float,
) -> tuple[bool, LedgerRow | None]:
    """Insert the user's row unless one exists. Returns (won, row); row is None only when the
    code or retry key collided with another user's (the caller draws new ones)."""
    row = {
        "campaign": campaign,
        "line_user_id": line_user_id,
        "state": LedgerState.CLAIMED.value,
        "code": code,
        "retry_key": retry_key,
        "store_id": store_id,
        "device_id": device_id,
        "order_id": order_id,
        "reply_token": reply_token,
        "reply_ambiguous": False,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    with engine.begin() as conn:
        won = conn.execute(_CLAIM, row).rowcount == 1
    return won, get_blocking(engine, campaign, line_user_id)


def transition_blocking(
    engine: Engine,
    campaign: str,
    line_user_id: str,
    *,
    from_states: tuple[LedgerState, ...],
    to_state: LedgerState,
    now: float,
    unattempted: bool = False,
    **values: Any,
) -> bool:
    """Move the row to `to_state` (setting `values`) only if it is in one of `from_states`
    (and, with `unattempted`, only if no push was ever tried for it)."""
    unknown = values.keys() - _COLUMNS
    if unknown:  # a prebuilt UPDATE would skip them silently
        raise ValueError(f"not columns of coupon_ledger: {sorted(unknown)}")
    stmt = _TRANSITION_UNATTEMPTED if unattempted else _TRANSITION
    params = {
        **values,
        "state": to_state.value,
        "updated_at": now,
        "w_campaign": campaign,
        "w_user": line_user_id,
        "w_states": [s.value for s in from_states],
    }
    with engine.begin() as conn:
        return conn.execute(stmt, params).rowcount == 1


def release_blocking(engine: Engine, campaign: str, line_user_id: str, *, from_state: LedgerState) -> bool:
    """Give a claim back (delete the row) when nothing was sent and nothing will be: a greeting's
    coupon whose reply did not go out and that may not be pushed. True if the row was removed."""
    with engine.begin() as conn:
        result = conn.execute(
            _RELEASE, {"w_campaign": campaign, "w_user": line_user_id, "w_state": from_state.value}
        )
    return bool(result.rowcount == 1)


def rows_in_states_blocking(engine: Engine, states: tuple[LedgerState, ...]) -> list[LedgerRow]:
    with engine.connect() as conn:
        found = conn.execute(
            select(ledger).where(ledger.c.state.in_([s.value for s in states])).order_by(ledger.c.created_at)
        ).mappings()
        return [_row(item) for item in found]


def campaign_pushes_blocking(engine: Engine, campaign: str, month: str) -> int:
    """Pushes this campaign has had confirmed in `month` (replies are free and not counted)."""
    with engine.connect() as conn:
        count = conn.execute(_PUSHES, {"w_campaign": campaign, "w_month": month}).scalar_one()
    return int(count)


def stop_campaign_blocking(engine: Engine, campaign: str, month: str, reason: str, now: float) -> None:
    with engine.begin() as conn:
        conn.execute(_STOP, {"campaign": campaign, "month": month, "reason": reason, "stopped_at": now})


def campaign_stop_blocking(engine: Engine, campaign: str, month: str) -> str | None:
    """Why the campaign is stopped for `month`, or None while it runs."""
    with engine.connect() as conn:
        reason = conn.execute(_STOPPED, {"w_campaign": campaign, "w_month": month}).scalar_one_or_none()
    return None if reason is None else str(reason)


class RedeemStatus(StrEnum):
    REDEEMED = "redeemed"
    ALREADY_REDEEMED = "already_redeemed"
    UNKNOWN_CODE = "unknown_code"
    NOT_DELIVERED = "not_delivered"
    EXPIRED = "expired"


def redeem_blocking(
    engine: Engine, code: str, *, now: float, order_id: str | None, valid_s: dict[str, float]
) -> tuple[RedeemStatus, LedgerRow | None]:
    """Redeem `code` once: a conditional update, so two tills scanning together cannot both win.

    `valid_s` maps campaign name to how long after delivery its codes stay valid.
    """
    with engine.begin() as conn:
        found = conn.execute(_BY_CODE, {"w_code": code}).mappings().first()
        if found is None:
            return RedeemStatus.UNKNOWN_CODE, None
        row = _row(found)
        if row.state is not LedgerState.SENT or row.sent_at is None:
            return RedeemStatus.NOT_DELIVERED, row
        if row.redeemed_at is not None:
            return RedeemStatus.ALREADY_REDEEMED, row
        if now - row.sent_at > valid_s.get(row.campaign, 0.0):
            return RedeemStatus.EXPIRED, row
        done = conn.execute(
            _REDEEM, {"redeemed_at": now, "redeemed_order_id": order_id, "updated_at": now, "w_code": code}
        ).rowcount
    if done != 1:
        return RedeemStatus.ALREADY_REDEEMED, get_blocking(engine, row.campaign, row.line_user_id)
    return RedeemStatus.REDEEMED, get_blocking(engine, row.campaign, row.line_user_id)
