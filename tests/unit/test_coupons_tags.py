"""Tag rules: three coffees in 30 days by a bound member earns "coffee lover"."""

from __future__ import annotations

import pytest

from agent.config import TagRuleConfig
from membership.coupons import Fact, FactKind
from membership.coupons._tags import MemberTag, Purchase, earned_tags, member_purchases

DAY = 86400.0
NOW = 1_790_000_000.0
A, B = "U" + "a" * 32, "U" + "b" * 32
COFFEE = TagRuleConfig(tag="咖啡愛好者 / coffee lover", category="coffee", min_purchases=3, window_days=30)


def buy(user: str, order: str, days_ago: float, *categories: str) -> Purchase:
    return Purchase(line_user_id=user, order_id=order, at=NOW - days_ago * DAY, categories=categories)


def test_three_coffees_in_the_window_earn_the_tag() -> None:
    purchases = [buy(A, "o1", 29, "coffee"), buy(A, "o2", 10, "coffee", "cake"), buy(A, "o3", 0, "coffee")]
    assert earned_tags([COFFEE], purchases, now=NOW) == {MemberTag(line_user_id=A, tag=COFFEE.tag)}


@pytest.mark.parametrize(
    "purchases",
    [
        [buy(A, "o1", 31, "coffee"), buy(A, "o2", 10, "coffee"), buy(A, "o3", 0, "coffee")],  # one too old
        [buy(A, "o1", 1, "coffee"), buy(A, "o2", 1, "coffee"), buy(A, "o2", 1, "coffee")],  # same order twice
        [
            buy(A, "o1", 1, "coffee"),
            buy(B, "o2", 1, "coffee"),
            buy(A, "o3", 1, "tea"),
        ],  # split across members
        [
            buy(A, "o1", 1, "coffee"),
            buy(A, "o2", 1, "coffee"),
            buy(A, "o3", -1, "coffee"),
        ],  # one in the future
    ],
    ids=["too-old", "same-order", "other-member", "future"],
)
def test_not_enough_qualifying_purchases(purchases: list[Purchase]) -> None:
    assert earned_tags([COFFEE], purchases, now=NOW) == set()


def test_several_rules_and_members() -> None:
    tea = TagRuleConfig(tag="tea", category="tea", min_purchases=1, window_days=7)
    purchases = [buy(A, f"a{i}", i, "coffee") for i in range(3)] + [
        buy(B, "b1", 2, "tea"),
        buy(B, "b2", 8, "tea"),
    ]
    assert earned_tags([COFFEE, tea], purchases, now=NOW) == {
        MemberTag(line_user_id=A, tag=COFFEE.tag),
        MemberTag(line_user_id=B, tag="tea"),
    }


def test_purchases_belong_to_the_member_who_bound_the_order() -> None:
    def fact(kind: FactKind, order: str, **kw: object) -> Fact:
        return Fact(kind=kind, store_id="s", device_id="d", at=NOW, order_id=order, **kw)  # type: ignore[arg-type]

    facts = [
        fact(FactKind.PAYMENT, "o1", amount_twd=120, categories=("coffee",)),
        fact(FactKind.PAYMENT, "o2", amount_twd=80, categories=("coffee",)),  # never bound: anonymous
        fact(FactKind.BOUND_MEMBER, "o1", line_user_id=A),
    ]
    assert member_purchases(facts) == [
        Purchase(line_user_id=A, order_id="o1", at=NOW, categories=("coffee",))
    ]
