"""Coupon events go upstream live on `coupon_push`, once per fact, in the shape the cloud reads."""

from __future__ import annotations

from pathlib import Path

from agent.db import prepare_state_db
from cloud.ingest._decode import StoredEnvelope, facts_of
from membership.coupons import Fact, FactKind
from membership.coupons._events import COUPON_EVENTS_STREAM, offer_coupon_event
from offline_queue import Outbox

NOW = 1_790_000_000.0


async def test_each_coupon_fact_is_offered_once_and_the_cloud_reads_it(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "state.db", prepare=prepare_state_db, clock=lambda: NOW)
    try:
        kinds = (FactKind.COUPON_REPLIED, FactKind.COUPON_REDEEMED, FactKind.PAYMENT)
        for kind in kinds:
            fact = Fact(
                kind=kind,
                store_id="s1",
                device_id="c1",
                at=NOW,
                order_id="o-1",
                line_user_id="U1",
                campaign="welcome",
                amount_twd=100,
            )
            await offer_coupon_event(outbox, fact)
            await offer_coupon_event(outbox, fact)  # replayed: deduped by the fact key
        records = await outbox.claim(COUPON_EVENTS_STREAM, limit=10)
    finally:
        await outbox.close()
    assert [r.payload["event"] for r in records] == ["replied", "redeemed"]
    envelopes = [
        StoredEnvelope(
            id=str(r.id),
            store_id="s1",
            device_id="c1",
            stream=COUPON_EVENTS_STREAM,
            seq=i,
            ts=NOW,
            data=r.payload,
        )
        for i, r in enumerate(records, 1)
    ]
    facts = [f for e in envelopes for f in facts_of(e)]
    assert [(f.kind, f.campaign, f.line_user_id) for f in facts] == [
        ("coupon_replied", "welcome", "U1"),
        ("coupon_redeemed", "welcome", "U1"),
    ]
