"""The daily funnel summary upstream carries the beacon figures: visits, greetings replied and
greeted visits followed by the shopper's bound payment within `coupons.visit_attribution_h`."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db, prepare_state_db
from membership.coupons import Fact, FactKind, record_fact_blocking
from membership.coupons._upstream import FunnelUpstream
from offline_queue import Outbox

NOW = 1_790_000_000.0  # 2026-09-21 22:13 Asia/Taipei
YESTERDAY = NOW - 86400.0  # 2026-09-20, a closed day
A, B = "U" + "a" * 32, "U" + "b" * 32


def fact(kind: FactKind, at: float, **kw: object) -> Fact:
    return Fact(kind=kind, store_id="store-001", device_id="counter-1", at=at, **kw)  # type: ignore[arg-type]


async def test_daily_summary_has_the_visit_keys(tmp_path: Path) -> None:
    config = parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "coupons": {"visit_attribution_h": 1},
        },
        environ={},
    )
    path = tmp_path / "s.db"
    db = open_state_db(path)
    migrate(db)
    for f in (
        fact(FactKind.BEACON_VISIT, YESTERDAY, line_user_id=A, order_id="visit:e1"),
        fact(
            FactKind.GREETING_REPLIED, YESTERDAY + 1, line_user_id=A, order_id="visit:e1", campaign="welcome"
        ),
        fact(FactKind.BEACON_VISIT, YESTERDAY, line_user_id=B, order_id="visit:e2"),
        fact(
            FactKind.GREETING_REPLIED, YESTERDAY + 1, line_user_id=B, order_id="visit:e2", campaign="welcome"
        ),
        # A pays 30 min after the greeting (bound), B two hours after: only A is within 1 h
        fact(FactKind.PAYMENT, YESTERDAY + 1800, order_id="o1", amount_twd=100),
        fact(FactKind.BOUND_MEMBER, YESTERDAY + 1830, order_id="o1", line_user_id=A),
        fact(FactKind.PAYMENT, YESTERDAY + 7200, order_id="o2", amount_twd=100),
        fact(FactKind.BOUND_MEMBER, YESTERDAY + 7230, order_id="o2", line_user_id=B),
    ):
        record_fact_blocking(db, f)
    outbox = await Outbox.open(path, prepare=prepare_state_db, clock=lambda: NOW)
    ctx = AgentContext(config=config, db=db, wall_clock=lambda: NOW, services={"outbox": outbox})
    try:
        assert await FunnelUpstream(ctx).run_once() == (1, 0)
        [record] = await outbox.claim("funnel", limit=10)
        summary = record.payload
        assert summary["day"] == "2026-09-20"
        assert (summary["beacon_visits"], summary["greetings_replied"], summary["greeted_then_paid"]) == (
            2,
            2,
            1,
        )
    finally:
        await outbox.close()
        db.close()


def test_shopedge_report_json_has_the_visit_keys(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "config.toml"
    config.write_text(
        '[device]\nstore_id = "store-001"\ndevice_id = "counter-1"\n[storage]\nstate_dir = "state"\n'
        "[coupons]\nvisit_attribution_h = 1\n",
        encoding="utf-8",
    )
    db = open_state_db(tmp_path / "state" / "shopedge.db")
    migrate(db)
    for f in (
        fact(FactKind.BEACON_VISIT, YESTERDAY, line_user_id=A, order_id="visit:e1"),
        fact(
            FactKind.GREETING_REPLIED, YESTERDAY + 1, line_user_id=A, order_id="visit:e1", campaign="welcome"
        ),
        fact(FactKind.BEACON_VISIT, YESTERDAY + 60, line_user_id=A, order_id="visit:e3"),  # in the cool-down
        fact(FactKind.PAYMENT, YESTERDAY + 1800, order_id="o1", amount_twd=100),
        fact(FactKind.BOUND_MEMBER, YESTERDAY + 1830, order_id="o1", line_user_id=A),
    ):
        record_fact_blocking(db, f)
    db.close()
    result = subprocess.run(
        [sys.executable, "-m", "agent", "report", "--config", str(config), "--since", "2026-09-01", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["beacon_visits"], document["greetings_replied"], document["greeted_then_paid"]) == (
        2,
        1,
        1,
    )
