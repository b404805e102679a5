"""The counter funnel: recorded facts in, per store/device/day figures out.

Owns the fact vocabulary (`FactKind`), recording a fact idempotently (`record_fact_blocking`,
keyed so a replayed event counts once) and the pure aggregation (`funnel_rows`, `funnel_total`)
that the report, the chart and the daily upstream summary all share.

Cost per acquired friend = LINE Pay's fee on the tickets that brought the new friends
(amount x `linepay.fee_rate`) + the pushes spent (x the campaign's `message_cost_twd`; replies are
free), divided by the new friends.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from base.statedb import StateDB, placeholders
from membership.coupons._policy import local_day

__all__ = [
    "REPORT_KEYS",
    "Fact",
    "FactKind",
    "FunnelRow",
    "facts_since_blocking",
    "funnel_rows",
    "funnel_total",
    "insert_facts",
    "parse_since",
    "record_fact_blocking",
    "record_facts_blocking",
]


class FactKind(StrEnum):
    PAYMENT = "payment"  # a captured LINE Pay payment (amount, categories)
    BINDING_QR_SHOWN = "binding_qr_shown"  # the paid screen showed a binding QR for the order
    BINDING_MESSAGE = "binding_message"  # a shopper's binding message reached the relay
    NEW_FRIEND = "new_friend"  # that shopper had just added the Official Account
    BOUND_MEMBER = "bound_member"  # the binding token was valid: order bound to the LINE user
    COUPON_REPLIED = "coupon_replied"
    COUPON_PUSHED = "coupon_pushed"
    COUPON_REDEEMED = "coupon_redeemed"
    BEACON_VISIT = "beacon_visit"  # a friend's verified `enter` at the counter's beacon
    GREETING_REPLIED = "greeting_replied"  # that friend was greeted by reply (free)
    GREETING_PUSHED = "greeting_pushed"  # ... or by push (push_fallback; paid)


# The JSON report's keys (the list), in display order.
REPORT_KEYS = (
    "payments",
    "binding_qr_shown",
    "binding_messages",
    "new_friends",
    "bound_members",
    "binding_rate",
    "coupons_replied",
    "coupons_pushed",
    "coupons_redeemed",
    "messages_spent",
    "cost_per_friend_twd",
    "beacon_visits",
    "greetings_replied",
    "greeted_then_paid",
)


@dataclass(frozen=True, kw_only=True)
class Fact:
    """One thing that happened at a counter, attributed to store, device and time (wall clock).

    `order_id` is the sale; a beacon visit and its greeting have none, and carry
    "visit:<webhookEventId>" there instead so each visit is its own fact.
    """

    kind: FactKind
    store_id: str
    device_id: str
    at: float
    order_id: str | None = None
    line_user_id: str | None = None
    amount_twd: int | None = None
    categories: tuple[str, ...] = ()
    campaign: str | None = None

    def __post_init__(self) -> None:
        if self.kind is FactKind.PAYMENT and (self.order_id is None or self.amount_twd is None):
            raise ValueError("a payment fact needs order_id and amount_twd")
        if self.amount_twd is not None and self.amount_twd < 0:
            raise ValueError(f"amount_twd must be >= 0, got {self.amount_twd}")

    @property
    def key(self) -> str:
        """Identity for idempotent recording: the same event replayed is the same fact."""
        parts = (
            self.kind.value,
            self.store_id,
            self.device_id,
            self.order_id,
            self.line_user_id,
            self.campaign,
        )
        return ":".join(part or "" for part in parts)


# Plain SQL on the pooled sqlite3 connection (base.statedb): a sale records its facts in one
# transaction, and SQLAlchemy's execute path cost more than the insert (bench/footprint.py).
_FACT_COLUMNS = (
    "fact_key",
    "kind",
    "store_id",
    "device_id",
    "at",
    "order_id",
    "line_user_id",
    "amount_twd",
    "categories",
    "campaign",
)
_INSERT_FACT = (
    f"INSERT INTO funnel_facts ({', '.join(_FACT_COLUMNS)})"
    f" VALUES ({placeholders(len(_FACT_COLUMNS))}) ON CONFLICT DO NOTHING"
)
# A fact's fields, in `Fact` field order (the key and the row id are not read back).
_SELECT_FACTS_SINCE = (
    "SELECT kind, store_id, device_id, at, order_id, line_user_id, amount_twd, categories, campaign"
    " FROM funnel_facts WHERE at >= ? ORDER BY at"
)


def record_fact_blocking(db: StateDB, fact: Fact) -> bool:
    """Record `fact` unless a fact with its key exists; True when it was new."""
    return record_facts_blocking(db, [fact])[0]


def record_facts_blocking(db: StateDB, facts: Sequence[Fact]) -> list[bool]:
    """Record `facts` in one transaction, each unless a fact with its key exists; for each,
    True when it was new."""
    with db.transaction() as conn:
        return insert_facts(conn, facts)


def insert_facts(conn: sqlite3.Connection, facts: Sequence[Fact]) -> list[bool]:
    """The statements of `record_facts_blocking`, as a transaction body (`StateDB.write`)."""
    return [conn.execute(_INSERT_FACT, _fact_row(fact)).rowcount == 1 for fact in facts]


def _fact_row(fact: Fact) -> tuple[Any, ...]:
    categories = json.dumps(list(fact.categories), ensure_ascii=False) if fact.categories else None
    return (
        fact.key,
        fact.kind.value,
        fact.store_id,
        fact.device_id,
        fact.at,
        fact.order_id,
        fact.line_user_id,
        fact.amount_twd,
        categories,
        fact.campaign,
    )


def facts_since_blocking(db: StateDB, since: float) -> list[Fact]:
    with db.transaction() as conn:
        rows = conn.execute(_SELECT_FACTS_SINCE, (since,)).fetchall()
    return [
        Fact(
            kind=FactKind(kind),
            store_id=store_id,
            device_id=device_id,
            at=at,
            order_id=order_id,
            line_user_id=line_user_id,
            amount_twd=amount_twd,
            categories=tuple(json.loads(categories)) if categories else (),
            campaign=campaign,
        )
        for kind, store_id, device_id, at, order_id, line_user_id, amount_twd, categories, campaign in rows
    ]


@dataclass(frozen=True, kw_only=True)
class FunnelRow:
    """One store/device/day of the funnel (day = None for a total over a period)."""

    store_id: str
    device_id: str
    day: date | None
    payments: int = 0
    payments_twd: int = 0
    binding_qr_shown: int = 0
    binding_messages: int = 0
    new_friends: int = 0
    bound_members: int = 0
    coupons_replied: int = 0
    coupons_pushed: int = 0
    coupons_redeemed: int = 0
    beacon_visits: int = 0
    greetings_replied: int = 0
    greetings_pushed: int = 0
    greeted_then_paid: int = 0  # greeted visits followed by that shopper's payment at the store
    linepay_fee_twd: float = 0.0
    message_cost_twd: float = 0.0

    @property
    def binding_rate(self) -> float | None:
        """Bound members per new friend; None when there were no new friends."""
        return round(self.bound_members / self.new_friends, 4) if self.new_friends else None

    @property
    def messages_spent(self) -> int:
        return self.coupons_pushed + self.greetings_pushed  # replies are free

    @property
    def cost_per_friend_twd(self) -> float | None:
        if not self.new_friends:
            return None
        return round((self.linepay_fee_twd + self.message_cost_twd) / self.new_friends, 2)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["day"] = self.day.isoformat() if self.day else None
        data["linepay_fee_twd"] = round(self.linepay_fee_twd, 2)
        data["message_cost_twd"] = round(self.message_cost_twd, 2)
        data["binding_rate"] = self.binding_rate
        data["messages_spent"] = self.messages_spent
        data["cost_per_friend_twd"] = self.cost_per_friend_twd
        return data


_COUNTERS = {
    FactKind.PAYMENT: "payments",
    FactKind.BINDING_QR_SHOWN: "binding_qr_shown",
    FactKind.BINDING_MESSAGE: "binding_messages",
    FactKind.NEW_FRIEND: "new_friends",
    FactKind.BOUND_MEMBER: "bound_members",
    FactKind.COUPON_REPLIED: "coupons_replied",
    FactKind.COUPON_PUSHED: "coupons_pushed",
    FactKind.COUPON_REDEEMED: "coupons_redeemed",
    FactKind.BEACON_VISIT: "beacon_visits",
    FactKind.GREETING_REPLIED: "greetings_replied",
    FactKind.GREETING_PUSHED: "greetings_pushed",
}
_GREETED = (FactKind.GREETING_REPLIED, FactKind.GREETING_PUSHED)


def funnel_rows(
    facts: Iterable[Fact],
    *,
    zone: str,
    fee_rate: float,
    message_cost_twd: Mapping[str, float],
    default_message_cost_twd: float = 0.0,
    greeting_cost_twd: Mapping[str, float] | None = None,
    attribution_s: float = 2 * 3600.0,
) -> list[FunnelRow]:
    """Aggregate facts per (store, device, local day), sorted; a pure function of its inputs.

    A new friend's LINE Pay fee comes from the payment fact with the same order id (wherever it
    falls in the input); a new friend without a known payment adds no fee. A greeted visit is
    `greeted_then_paid` when the same store took a payment within `attribution_s` after the
    greeting for an order the same shopper bound (the only link from a payment to a LINE user).
    """
    facts = list(facts)
    amounts = {f.order_id: f.amount_twd or 0 for f in facts if f.kind is FactKind.PAYMENT}
    paid = _paid_by_member(facts)
    counts: dict[tuple[str, str, date], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for fact in facts:
        bucket = counts[(fact.store_id, fact.device_id, local_day(fact.at, zone))]
        bucket[_COUNTERS[fact.kind]] += 1
        if fact.kind is FactKind.PAYMENT:
            bucket["payments_twd"] += fact.amount_twd or 0
        elif fact.kind is FactKind.NEW_FRIEND:
            bucket["linepay_fee_twd"] += amounts.get(fact.order_id, 0) * fee_rate
        elif fact.kind is FactKind.COUPON_PUSHED:
            bucket["message_cost_twd"] += message_cost_twd.get(fact.campaign or "", default_message_cost_twd)
        elif fact.kind is FactKind.GREETING_PUSHED:
            costs = greeting_cost_twd or {}
            bucket["message_cost_twd"] += costs.get(fact.campaign or "", default_message_cost_twd)
        if fact.kind in _GREETED and any(
            0 <= at - fact.at <= attribution_s for at in paid.get((fact.store_id, fact.line_user_id), ())
        ):
            bucket["greeted_then_paid"] += 1
    return [_from_sums(store, device, day, bucket) for (store, device, day), bucket in sorted(counts.items())]


def _paid_by_member(facts: list[Fact]) -> dict[tuple[str, str | None], list[float]]:
    """When each member paid at each store: payments joined to the member who bound the order."""
    owner = {f.order_id: f.line_user_id for f in facts if f.kind is FactKind.BOUND_MEMBER and f.line_user_id}
    paid: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    for fact in facts:
        if fact.kind is FactKind.PAYMENT and fact.order_id in owner:
            paid[(fact.store_id, owner[fact.order_id])].append(fact.at)
    return paid


def _from_sums(store: str, device: str, day: date | None, sums: Mapping[str, float]) -> FunnelRow:
    def count(name: str) -> int:
        return int(sums.get(name, 0))

    return FunnelRow(
        store_id=store,
        device_id=device,
        day=day,
        payments=count("payments"),
        payments_twd=count("payments_twd"),
        binding_qr_shown=count("binding_qr_shown"),
        binding_messages=count("binding_messages"),
        new_friends=count("new_friends"),
        bound_members=count("bound_members"),
        coupons_replied=count("coupons_replied"),
        coupons_pushed=count("coupons_pushed"),
        coupons_redeemed=count("coupons_redeemed"),
        beacon_visits=count("beacon_visits"),
        greetings_replied=count("greetings_replied"),
        greetings_pushed=count("greetings_pushed"),
        greeted_then_paid=count("greeted_then_paid"),
        linepay_fee_twd=sums.get("linepay_fee_twd", 0.0),
        message_cost_twd=sums.get("message_cost_twd", 0.0),
    )


def funnel_total(rows: Iterable[FunnelRow], *, store_id: str = "*", device_id: str = "*") -> FunnelRow:
    """The sum of `rows` (rates and cost per friend recomputed from the sums, not averaged)."""
    sums: dict[str, float] = defaultdict(float)
    for row in rows:
        for name in (
            *_COUNTERS.values(),
            "payments_twd",
            "linepay_fee_twd",
            "message_cost_twd",
            "greeted_then_paid",
        ):
            sums[name] += getattr(row, name)
    return _from_sums(store_id, device_id, None, sums)


# The `--since` grammar of `shopedge report` and `shopedge cloud report`.
_SINCE = re.compile(r"^(\d{1,4})([mhd])\Z")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: float, zone: str) -> float:
    """`7d`, `24h`, `90m` (back from now) or `YYYY-MM-DD` (that local midnight) -> epoch seconds.

    Raises:
        ValueError: naming what was expected.
    """
    text = text.strip()
    match = _SINCE.match(text)
    if match:
        return now - int(match[1]) * _UNITS[match[2]]
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since must be like 7d, 24h, 90m or 2026-11-01, got {text!r}") from None
    return datetime.combine(day, time(), ZoneInfo(zone)).timestamp()
