"""Beacon visits in the funnel: visits, greetings, and greeted visits followed by the same
shopper's payment at the store within the attribution window (worked out by hand)."""

from __future__ import annotations

from membership.coupons import REPORT_KEYS, Fact, FactKind, funnel_rows, funnel_total
from membership.coupons._report import format_table, render_chart

T = 1_789_956_000.0  # 2026-09-21 10:00 Asia/Taipei
A, B, C = (f"U{n:032x}" for n in (1, 2, 3))
H = 3600.0


def fact(kind: FactKind, at: float, store: str = "store-001", **kw: object) -> Fact:
    return Fact(kind=kind, store_id=store, device_id="counter-1", at=at, **kw)  # type: ignore[arg-type]


def visit(
    user: str, at: float, event: str, greeted: FactKind | None = FactKind.GREETING_REPLIED, **kw: object
) -> list[Fact]:
    facts = [fact(FactKind.BEACON_VISIT, at, line_user_id=user, order_id=f"visit:{event}", **kw)]
    if greeted is not None:
        facts.append(
            fact(greeted, at + 1, line_user_id=user, order_id=f"visit:{event}", campaign="welcome", **kw)
        )
    return facts


def paid(order: str, user: str, at: float, store: str = "store-001") -> list[Fact]:
    return [
        fact(FactKind.PAYMENT, at, store, order_id=order, amount_twd=100),
        fact(FactKind.BOUND_MEMBER, at + 30, store, order_id=order, line_user_id=user),
    ]


FACTS = [
    # A: greeted by reply at 10:00, pays (bound) at 10:30 -> greeted_then_paid.
    *visit(A, T, "e1"),
    *paid("o1", A, T + 0.5 * H),
    # A again at 12:00 within the cool-down: a visit, no greeting.
    *visit(A, T + 2 * H, "e2", greeted=None),
    # B: greeted by push at 10:00, pays 3 h later: outside a 2 h window.
    *visit(B, T, "e3", greeted=FactKind.GREETING_PUSHED),
    *paid("o2", B, T + 3 * H),
    # C: greeted, and someone else (A) pays right after; C's own payment is at another store.
    *visit(C, T + 4 * H, "e4"),
    *paid("o3", A, T + 4 * H + 60),
    *paid("o4", C, T + 4 * H + 120, store="store-002"),
    # A payment before the greeting does not count either.
]


def rows(window_h: float = 2.0) -> list:  # type: ignore[type-arg]
    return funnel_rows(
        FACTS,
        zone="Asia/Taipei",
        fee_rate=0.0,
        message_cost_twd={"welcome": 0.2},
        greeting_cost_twd={"welcome": 0.5},
        attribution_s=window_h * H,
    )


def test_visits_greetings_and_attribution() -> None:
    store1 = [r for r in rows() if r.store_id == "store-001"]
    total = funnel_total(store1, store_id="store-001").as_dict()
    assert total["beacon_visits"] == 4
    assert total["greetings_replied"] == 2  # A at 10:00 and C
    assert total["greetings_pushed"] == 1  # B
    assert total["greeted_then_paid"] == 1  # only A's first visit
    assert total["messages_spent"] == 1  # the push; replies are free
    assert total["message_cost_twd"] == 0.5  # the greeting's own cost, not the campaign's
    assert set(REPORT_KEYS) >= {"beacon_visits", "greetings_replied", "greeted_then_paid"}


def test_a_wider_window_attributes_more() -> None:
    total = funnel_total(rows(window_h=4.0)).as_dict()
    assert total["greeted_then_paid"] == 2  # B's payment 3 h later now counts


def test_a_payment_before_the_greeting_is_not_attributed() -> None:
    facts = [*paid("o9", A, T - 60), *visit(A, T, "e9")]
    [row] = funnel_rows(facts, zone="Asia/Taipei", fee_rate=0.0, message_cost_twd={})
    assert row.greeted_then_paid == 0
    assert row.beacon_visits == 1


def test_the_table_and_chart_show_the_visit_stages() -> None:
    store_rows = rows()
    total = funnel_total(store_rows)
    table = format_table(store_rows, total, plan_messages=200)
    assert "visit" in table.splitlines()[0] and "g+paid" in table.splitlines()[0]
    image = render_chart(total, title="t")
    assert image.size == (1000, 856)
