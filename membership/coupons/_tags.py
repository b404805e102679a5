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

from sqlalchemy import Engine, select
from sqlalchemy.dialects.sqlite import insert

from membership.config import TagRuleConfig
from membership.coupons._funnel import Fact, FactKind
from membership.coupons._tables import member_tags

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


def assign_tags_blocking(engine: Engine, tags: Iterable[MemberTag], now: float) -> list[MemberTag]:
    """Store the tags; returns those that are new (the ones to sync upstream). Tags are kept."""
    new: list[MemberTag] = []
    with engine.begin() as conn:
        for tag in sorted(tags):
            stmt = (
                insert(member_tags)
                .values(line_user_id=tag.line_user_id, tag=tag.tag, assigned_at=now)
                .on_conflict_do_nothing()
            )
            if conn.execute(stmt).rowcount == 1:
                new.append(tag)
    return new


def tags_blocking(engine: Engine) -> list[MemberTag]:
    with engine.connect() as conn:
        rows = conn.execute(select(member_tags.c.line_user_id, member_tags.c.tag)).all()
    return sorted(MemberTag(line_user_id=r.line_user_id, tag=r.tag) for r in rows)
