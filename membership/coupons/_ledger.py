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

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from base.statedb import StateDB, placeholders

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


# The columns a `LedgerRow` is read from: its fields, named as the columns (as the journal does).
_ROW_COLUMNS = tuple(field.name for field in dataclasses.fields(LedgerRow))
# Every column of coupon_ledger (migration 0600_coupons): what `transition_blocking` may set.
_COLUMNS = frozenset({*_ROW_COLUMNS, "updated_at", "redeemed_order_id"})
_CLAIM_COLUMNS = (
    "campaign",
    "line_user_id",
    "state",
    "code",
    "retry_key",
    "store_id",
    "device_id",
    "order_id",
    "reply_token",
    "reply_ambiguous",
    "attempts",
    "created_at",
    "updated_at",
)


def _row(found: Sequence[Any]) -> LedgerRow:
    """A `LedgerRow` from a row of `_SELECT_ROW` (columns in `_ROW_COLUMNS` order)."""
    values = dict(zip(_ROW_COLUMNS, found, strict=True))
    values["state"] = LedgerState(values["state"])
    values["reply_ambiguous"] = bool(values["reply_ambiguous"])
    values["attempts"] = int(values["attempts"])
    return LedgerRow(**values)


# Plain SQL on the pooled sqlite3 connection (base.statedb). Booleans are stored as 0/1.
_SELECT_ROW = f"SELECT {', '.join(_ROW_COLUMNS)} FROM coupon_ledger"
_SELECT_BY_USER = f"{_SELECT_ROW} WHERE campaign = ? AND line_user_id = ?"
_SELECT_BY_CODE = f"{_SELECT_ROW} WHERE code = ?"
_SELECT_IN_STATES = _SELECT_ROW + " WHERE state IN ({states}) ORDER BY created_at"
_INSERT_CLAIM = (
    f"INSERT INTO coupon_ledger ({', '.join(_CLAIM_COLUMNS)})"
    f" VALUES ({placeholders(len(_CLAIM_COLUMNS))}) ON CONFLICT DO NOTHING"
)
# SET list and number of states filled in by `_update_transition`.
_UPDATE_TRANSITION = (
    "UPDATE coupon_ledger SET {set} WHERE campaign = ? AND line_user_id = ? AND state IN ({states})"
)
_UNATTEMPTED = " AND attempts = 0"
_DELETE_RELEASE = (
    "DELETE FROM coupon_ledger WHERE campaign = ? AND line_user_id = ? AND state = ? AND reply_ambiguous IS 0"
)
_SELECT_PUSHES = (
    "SELECT count(*) FROM coupon_ledger WHERE campaign = ? AND month = ? AND channel = ? AND state = ?"
)
_INSERT_STOP = (
    "INSERT INTO coupon_campaign_stops (campaign, month, reason, stopped_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_SELECT_STOP = "SELECT reason FROM coupon_campaign_stops WHERE campaign = ? AND month = ?"
_UPDATE_REDEEM = (
    "UPDATE coupon_ledger SET redeemed_at = ?, redeemed_order_id = ?, updated_at = ?"
    " WHERE code = ? AND redeemed_at IS NULL"
)


@functools.lru_cache(maxsize=64)
def _update_transition(columns: tuple[str, ...], states: int, unattempted: bool) -> str:
    """The UPDATE setting `columns` (checked against `_COLUMNS` by the caller) then `state` and
    `updated_at`, for a row in one of `states` states."""
    assignments = ", ".join(f"{name} = ?" for name in (*columns, "state", "updated_at"))
    sql = _UPDATE_TRANSITION.format(set=assignments, states=placeholders(states))
    return sql + _UNATTEMPTED if unattempted else sql


def get_blocking(db: StateDB, campaign: str, line_user_id: str) -> LedgerRow | None:
    with db.transaction() as conn:
        found = conn.execute(_SELECT_BY_USER, (campaign, line_user_id)).fetchone()
    return _row(found) if found is not None else None


def claim_blocking(
    db: StateDB,
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
    row = (
        campaign,
        line_user_id,
        LedgerState.CLAIMED.value,
        code,
        retry_key,
        store_id,
        device_id,
        order_id,
        reply_token,
        False,  # reply_ambiguous
        0,  # attempts
        now,  # created_at
        now,  # updated_at
    )
    with db.transaction() as conn:
        won = conn.execute(_INSERT_CLAIM, row).rowcount == 1
    return won, get_blocking(db, campaign, line_user_id)


def transition_blocking(
    db: StateDB,
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
    if unknown:  # never let a misspelt keyword reach the SQL text
        raise ValueError(f"not columns of coupon_ledger: {sorted(unknown)}")
    # `state` and `updated_at` are always set from to_state and now.
    columns = tuple(name for name in values if name not in ("state", "updated_at"))
    sql = _update_transition(columns, len(from_states), unattempted)
    params = (
        *(values[name] for name in columns),
        to_state.value,
        now,
        campaign,
        line_user_id,
        *(s.value for s in from_states),
    )
    with db.transaction() as conn:
        return conn.execute(sql, params).rowcount == 1


def release_blocking(db: StateDB, campaign: str, line_user_id: str, *, from_state: LedgerState) -> bool:
    """Give a claim back (delete the row) when nothing was sent and nothing will be: a greeting's
    coupon whose reply did not go out and that may not be pushed. True if the row was removed."""
    with db.transaction() as conn:
        removed = conn.execute(_DELETE_RELEASE, (campaign, line_user_id, from_state.value)).rowcount
    return removed == 1


def rows_in_states_blocking(db: StateDB, states: tuple[LedgerState, ...]) -> list[LedgerRow]:
    sql = _SELECT_IN_STATES.format(states=placeholders(len(states)))
    with db.transaction() as conn:
        found = conn.execute(sql, [s.value for s in states]).fetchall()
    return [_row(item) for item in found]


def campaign_pushes_blocking(db: StateDB, campaign: str, month: str) -> int:
    """Pushes this campaign has had confirmed in `month` (replies are free and not counted)."""
    with db.transaction() as conn:
        (count,) = conn.execute(_SELECT_PUSHES, (campaign, month, "push", LedgerState.SENT.value)).fetchone()
    return int(count)


def stop_campaign_blocking(db: StateDB, campaign: str, month: str, reason: str, now: float) -> None:
    with db.transaction() as conn:
        conn.execute(_INSERT_STOP, (campaign, month, reason, now))


def campaign_stop_blocking(db: StateDB, campaign: str, month: str) -> str | None:
    """Why the campaign is stopped for `month`, or None while it runs."""
    with db.transaction() as conn:
        found = conn.execute(_SELECT_STOP, (campaign, month)).fetchone()
    return None if found is None else str(found[0])


class RedeemStatus(StrEnum):
    REDEEMED = "redeemed"
    ALREADY_REDEEMED = "already_redeemed"
    UNKNOWN_CODE = "unknown_code"
    NOT_DELIVERED = "not_delivered"
    EXPIRED = "expired"


def redeem_blocking(
    db: StateDB, code: str, *, now: float, order_id: str | None, valid_s: dict[str, float]
) -> tuple[RedeemStatus, LedgerRow | None]:
    """Redeem `code` once: a conditional update, so two tills scanning together cannot both win.

    `valid_s` maps campaign name to how long after delivery its codes stay valid.
    """
    with db.transaction() as conn:
        found = conn.execute(_SELECT_BY_CODE, (code,)).fetchone()
        if found is None:
            return RedeemStatus.UNKNOWN_CODE, None
        row = _row(found)
        if row.state is not LedgerState.SENT or row.sent_at is None:
            return RedeemStatus.NOT_DELIVERED, row
        if row.redeemed_at is not None:
            return RedeemStatus.ALREADY_REDEEMED, row
        if now - row.sent_at > valid_s.get(row.campaign, 0.0):
            return RedeemStatus.EXPIRED, row
        done = conn.execute(_UPDATE_REDEEM, (now, order_id, now, code)).rowcount
    if done != 1:
        return RedeemStatus.ALREADY_REDEEMED, get_blocking(db, row.campaign, row.line_user_id)
    return RedeemStatus.REDEEMED, get_blocking(db, row.campaign, row.line_user_id)
