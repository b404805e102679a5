"""The `funnel` component: daily summaries of closed days and new tags reach the outbox once."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db, prepare_state_db
from membership.coupons import Fact, FactKind, record_fact_blocking
from membership.coupons._tags import tags_blocking
from membership.coupons._upstream import FunnelUpstream
from offline_queue import Outbox

NOW = 1_790_000_000.0  # 2026-09-21 22:13 Asia/Taipei
DAY = 86400.0
A = "U" + "a" * 32


async def test_summaries_and_tags_go_upstream_once(tmp_path: Path) -> None:
    config = parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "coupons": {"tag_rules": [{"tag": "coffee lover", "category": "coffee", "min_purchases": 3}]},
        },
        environ={},
    )
    path = tmp_path / "s.db"
    db = open_state_db(path)
    migrate(db)
    for i, days_ago in enumerate((2, 1, 0)):
        at = NOW - days_ago * DAY
        order = f"o{i}"
        record_fact_blocking(
            db,
            Fact(
                kind=FactKind.PAYMENT,
                store_id="store-001",
                device_id="counter-1",
                at=at,
                order_id=order,
                amount_twd=100,
                categories=("coffee",),
            ),
        )
        record_fact_blocking(
            db,
            Fact(
                kind=FactKind.BOUND_MEMBER,
                store_id="store-001",
                device_id="counter-1",
                at=at,
                order_id=order,
                line_user_id=A,
            ),
        )
    outbox = await Outbox.open(path, prepare=prepare_state_db, clock=lambda: NOW)
    ctx = AgentContext(config=config, db=db, wall_clock=lambda: NOW, services={"outbox": outbox})
    upstream = FunnelUpstream(ctx)
    try:
        assert await upstream.run_once() == (2, 1)  # two closed days (today is still open), one tag
        assert await upstream.run_once() == (2, 0)  # offered again, deduped by the outbox
        records = await outbox.claim("funnel", limit=10)
        kinds = sorted((r.payload["type"], r.payload.get("day") or r.payload.get("tag")) for r in records)
        assert kinds == [
            ("daily_summary", "2026-09-19"),
            ("daily_summary", "2026-09-20"),
            ("member_tag", "coffee lover"),
        ]
        summary = next(r.payload for r in records if r.payload.get("day") == "2026-09-20")
        assert (summary["payments"], summary["bound_members"]) == (1, 1)
        assert [t.tag for t in tags_blocking(db)] == ["coffee lover"]
    finally:
        await outbox.close()
        db.close()
