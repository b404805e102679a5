"""Coupon events sent upstream live, so the chain's cloud sees replies, pushes and redemptions
the day they happen (the `funnel` daily summary only covers closed days).

One `coupon_push` outbox record per recorded coupon fact, deduped by the fact's key, so a
replayed event is sent once: `{"event": "replied"|"pushed"|"redeemed", "campaign",
"line_user_id", "order_id", "at"}`.
"""

from __future__ import annotations

import logging
from typing import Any

from membership.coupons._funnel import Fact, FactKind

__all__ = ["COUPON_EVENTS_STREAM", "offer_coupon_event"]

log = logging.getLogger(__name__)

COUPON_EVENTS_STREAM = "coupon_push"
_EVENTS = {
    FactKind.COUPON_REPLIED: "replied",
    FactKind.COUPON_PUSHED: "pushed",
    FactKind.COUPON_REDEEMED: "redeemed",
}


async def offer_coupon_event(outbox: Any, fact: Fact) -> None:
    """Put the fact on the uplink stream; a failure is logged, never raised (the fact is
    already recorded locally and reaches the cloud in the day's summary)."""
    event = _EVENTS.get(fact.kind)
    if event is None or outbox is None:
        return
    body = {
        "event": event,
        "campaign": fact.campaign,
        "line_user_id": fact.line_user_id,
        "order_id": fact.order_id,
        "at": fact.at,
    }
    try:
        await outbox.put(COUPON_EVENTS_STREAM, body, dedupe_key=f"coupon_event:{fact.key}")
    except Exception:
        log.exception("coupon event not queued upstream; the daily summary still counts it")
