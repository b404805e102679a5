"""Funnel figures from a known event set, worked out by hand in the comments."""

from __future__ import annotations

import pytest

from membership.coupons import REPORT_KEYS, Fact, FactKind, funnel_rows, funnel_total
from membership.coupons._report import format_table, parse_since, render_chart, report_json

DAY1 = 1_789_956_000.0  # 2026-09-21 10:00 Asia/Taipei
DAY2_EARLY = 1_790_008_200.0  # 2026-09-22 00:30 Asia/Taipei = 2026-09-21 16:30 UTC
A, B, C, E = (f"U{n:032x}" for n in (1, 2, 3, 5))


def fact(kind: FactKind, at: float, device: str = "counter-1", **kw: object) -> Fact:
    return Fact(kind=kind, store_id="store-001", device_id=device, at=at, **kw)  # type: ignore[arg-type]


EVENTS = [
    # counter-1, 2026-09-21: four payments (NT$2,000), three QRs shown, three binding messages.
    fact(FactKind.PAYMENT, DAY1, order_id="o1", amount_twd=500, categories=("coffee",)),
    fact(FactKind.PAYMENT, DAY1 + 60, order_id="o2", amount_twd=300),
    fact(FactKind.PAYMENT, DAY1 + 120, order_id="o3", amount_twd=1000),
    fact(FactKind.PAYMENT, DAY1 + 180, order_id="o4", amount_twd=200),
    *[fact(FactKind.BINDING_QR_SHOWN, DAY1 + 5, order_id=o) for o in ("o1", "o2", "o3")],
    *[
        fact(FactKind.BINDING_MESSAGE, DAY1 + 90, order_id=o, line_user_id=u)
        for o, u in (("o1", A), ("o2", B), ("o3", C))
    ],
    # A, B and C are new friends; C's token had expired, so only A and B are bound.
    *[
        fact(FactKind.NEW_FRIEND, DAY1 + 91, order_id=o, line_user_id=u)
        for o, u in (("o1", A), ("o2", B), ("o3", C))
    ],
    *[fact(FactKind.BOUND_MEMBER, DAY1 + 92, order_id=o, line_user_id=u) for o, u in (("o1", A), ("o2", B))],
    fact(FactKind.COUPON_REPLIED, DAY1 + 93, order_id="o1", line_user_id=A, campaign="welcome"),
    fact(FactKind.COUPON_PUSHED, DAY1 + 94, order_id="o2", line_user_id=B, campaign="welcome"),
    fact(FactKind.COUPON_REDEEMED, DAY1 + 3600, order_id="o1", line_user_id=A, campaign="welcome"),
    # counter-2, 00:30 local on 2026-09-22 (still the 21st in UTC): one friend by push.
    fact(FactKind.PAYMENT, DAY2_EARLY, "counter-2", order_id="o5", amount_twd=400),
    fact(FactKind.BINDING_QR_SHOWN, DAY2_EARLY + 1, "counter-2", order_id="o5"),
    fact(FactKind.BINDING_MESSAGE, DAY2_EARLY + 30, "counter-2", order_id="o5", line_user_id=E),
    fact(FactKind.NEW_FRIEND, DAY2_EARLY + 31, "counter-2", order_id="o5", line_user_id=E),
    fact(FactKind.BOUND_MEMBER, DAY2_EARLY + 32, "counter-2", order_id="o5", line_user_id=E),
    fact(
        FactKind.COUPON_PUSHED,
        DAY2_EARLY + 40,
        "counter-2",
        order_id="o5",
        line_user_id=E,
        campaign="welcome",
    ),
]


def aggregate() -> list:  # type: ignore[type-arg]
    return funnel_rows(EVENTS, zone="Asia/Taipei", fee_rate=0.022, message_cost_twd={"welcome": 0.2})


def test_per_device_and_local_day() -> None:
    day1, day2 = aggregate()
    assert (str(day1.day), day1.device_id, str(day2.day), day2.device_id) == (
        "2026-09-21",
        "counter-1",
        "2026-09-22",
        "counter-2",
    )
    d = day1.as_dict()
    assert {k: d[k] for k in REPORT_KEYS} == {
        "payments": 4,
        "binding_qr_shown": 3,
        "binding_messages": 3,
        "new_friends": 3,
        "bound_members": 2,
        "binding_rate": 0.6667,  # 2 bound / 3 friends
        "coupons_replied": 1,
        "coupons_pushed": 1,
        "coupons_redeemed": 1,
        "messages_spent": 1,  # the reply was free
        # fees on the friends' tickets (500 + 300 + 1000) x 2.2% = 39.60, + 1 push x 0.20 = 39.80; / 3
        "cost_per_friend_twd": 13.27,
        "beacon_visits": 0,
        "greetings_replied": 0,
        "greeted_then_paid": 0,
    }
    assert (d["payments_twd"], d["linepay_fee_twd"], d["message_cost_twd"]) == (2000, 39.6, 0.2)
    # counter-2: 400 x 2.2% = 8.80 + 0.20 = 9.00 for its one friend
    assert day2.as_dict()["cost_per_friend_twd"] == 9.0


def test_total_recomputes_rates_from_sums() -> None:
    total = funnel_total(aggregate(), store_id="store-001").as_dict()
    assert {k: total[k] for k in REPORT_KEYS} == {
        "payments": 5,
        "binding_qr_shown": 4,
        "binding_messages": 4,
        "new_friends": 4,
        "bound_members": 3,
        "binding_rate": 0.75,
        "coupons_replied": 1,
        "coupons_pushed": 2,
        "coupons_redeemed": 1,
        "messages_spent": 2,
        "cost_per_friend_twd": 12.2,  # (39.60 + 8.80 + 0.40) / 4
        "beacon_visits": 0,
        "greetings_replied": 0,
        "greeted_then_paid": 0,
    }


def test_no_friends_means_no_rate_and_no_cost() -> None:
    (row,) = funnel_rows(EVENTS[:1], zone="Asia/Taipei", fee_rate=0.022, message_cost_twd={})
    assert (row.binding_rate, row.cost_per_friend_twd, row.payments) == (None, None, 1)
    assert funnel_total([]).as_dict()["payments"] == 0


def test_a_payment_fact_needs_order_and_amount() -> None:
    with pytest.raises(ValueError, match="order_id and amount_twd"):
        fact(FactKind.PAYMENT, DAY1, order_id="o9")
    with pytest.raises(ValueError, match="amount_twd must be >= 0"):
        fact(FactKind.PAYMENT, DAY1, order_id="o9", amount_twd=-1)


def test_report_json_has_the_issue_keys_and_days() -> None:
    rows = aggregate()
    total = funnel_total(rows)
    document = report_json(rows, total, since=0.0, until=1.0, store_id="store-001", plan_messages=200)
    assert set(REPORT_KEYS) <= set(document)
    assert document["cost_per_friend_twd"] == 12.2
    assert [d["day"] for d in document["days"]] == ["2026-09-21", "2026-09-22"]


def test_table_lists_days_and_total() -> None:
    rows = aggregate()
    table = format_table(rows, funnel_total(rows), plan_messages=200)
    lines = table.splitlines()
    assert "2026-09-21" in lines[2] and "13.27" in lines[2]
    assert lines[4].split()[0] == "total" and lines[4].split()[-1] == "12.20"
    assert "messages spent 2 of the plan's 200" in lines[5]


def test_chart_is_drawn() -> None:
    image = render_chart(funnel_total(aggregate()), title="店 Store")
    assert image.size == (1000, 856)
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 10  # bars and anti-aliased CJK text, not a blank canvas


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", 1000.0 - 7 * 86400),
        ("24h", 1000.0 - 86400),
        ("90m", 1000.0 - 5400),
        ("2026-09-21", 1_789_920_000.0),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, now=1000.0, zone="Asia/Taipei") == expected


@pytest.mark.parametrize("text", ["7", "7w", "yesterday", "2026-13-01", ""])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="--since must be like"):
        parse_since(text, now=0.0, zone="Asia/Taipei")
