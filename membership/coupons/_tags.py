"""Member tag rules: pure evaluation over recorded purchases, plus storing what was earned.

A tag rule (`[[coupons.tag_rules]]`) gives a bound member a tag once they bought in a category at
least `min_purchases` times within the last `window_days`. Purchases are attributed to a member
through the binding (the order a shopper bound is theirs). LINE has no tag API, so tags are only
synced upstream, where the cloud turns them into audiences for segmented campaigns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from base.statedb import StateDB
from membership.config import TagRuleConfig
from membership.coupons._funnel import Fact, FactKind

__all__ = [
    "MemberTag",
    "Purchase",
    "assign_tags_blocking",
    "earned_tags",
    "member_purchases",
    "tags_blocking",
]


@dataclass(frozen=True, kw_only=True)
class Purchase:
    line_user_id: str
    order_id: str
    at: float
    categories: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, order=True)
class MemberTag:
    line_user_id: str
    tag: str


def member_purchases(facts: Iterable[Fact]) -> list[Purchase]:
    """Payments joined to the member who bound their order (unbound payments are anonymous)."""
    facts = list(facts)
    owner = {f.order_id: f.line_user_id for f in facts if f.kind is FactKind.BOUND_MEMBER and f.line_user_id}
    return [
        Purchase(line_user_id=owner[f.order_id], order_id=f.order_id, at=f.at, categories=f.categories)
        for f in facts
        if f.kind is FactKind.PAYMENT and f.order_id in owner and f.order_id is not None
    ]


def earned_tags(
    rules: Sequence[TagRuleConfig], purchases: Iterable[Purchase], *, now: float
) -> set[MemberTag]:
    """Every (member, tag) whose rule holds at `now`; an order counts once per category."""
    purchases = list(purchases)
    earned: set[MemberTag] = set()
    for rule in rules:
        since = now - rule.window_days * 86400
        orders: dict[str, set[str]] = defaultdict(set)
        for purchase in purchases:
            if since <= purchase.at <= now and rule.category in purchase.categories:
                orders[purchase.line_user_id].add(purchase.order_id)
        earned.update(
            MemberTag(line_user_id=member, tag=rule.tag)
            for member, bought in orders.items()
            if len(bought) >= rule.min_purchases
        )
    return earned


# Plain SQL on the pooled sqlite3 connection (base.statedb).
_INSERT_TAG = (
    "INSERT INTO member_tags (line_user_id, tag, assigned_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)
_SELECT_TAGS = "SELECT line_user_id, tag FROM member_tags"


def assign_tags_blocking(db: StateDB, tags: Iterable[MemberTag], now: float) -> list[MemberTag]:
    """Store the tags; returns those that are new (the ones to sync upstream). Tags are kept."""
    new: list[MemberTag] = []
    with db.transaction() as conn:
        for tag in sorted(tags):
            if conn.execute(_INSERT_TAG, (tag.line_user_id, tag.tag, now)).rowcount == 1:
                new.append(tag)
    return new


def tags_blocking(db: StateDB) -> list[MemberTag]:
    with db.transaction() as conn:
        rows = conn.execute(_SELECT_TAGS).fetchall()
    return sorted(MemberTag(line_user_id=line_user_id, tag=tag) for line_user_id, tag in rows)
