"""Component `funnel`: the daily funnel summary and new member tags, sent upstream.

Owns the hourly job that (1) puts one `funnel` outbox record per store/device/closed local day
(dedupe key per day, so restarts and reruns send it once) and (2) evaluates the tag rules and
puts each newly earned tag on the same stream. The sync uplink carries the stream to MQTT.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from base.health import Level
from membership.context import MembershipContext
from membership.coupons._funnel import facts_since_blocking, funnel_rows
from membership.coupons._policy import local_day
from membership.coupons._service import ServiceNotRunning
from membership.coupons._tags import assign_tags_blocking, earned_tags, member_purchases
from offline_queue import Durability

__all__ = ["FUNNEL_STREAM", "FunnelUpstream"]

log = logging.getLogger(__name__)

FUNNEL_STREAM = "funnel"
_LOOKBACK_DAYS = 3  # closed days re-offered after an outage; the dedupe key keeps them single


class FunnelUpstream:
    """Hourly: daily summaries of closed days and newly earned tags onto the `funnel` stream."""

    name = "funnel"

    def __init__(self, ctx: MembershipContext, *, interval: float = 3600.0) -> None:
        self.ctx = ctx
        self.interval = interval

    @property
    def _outbox(self) -> Any:
        outbox = self.ctx.services.get("outbox")
        if outbox is None:
            raise ServiceNotRunning("no outbox: ctx.services['outbox'] is missing")
        return outbox

    async def run(self) -> None:
        while True:
            summaries, tags = await self.run_once()
            self.ctx.health.set(self.name, Level.GREEN, f"{summaries} day summaries offered, {tags} new tags")
            await asyncio.sleep(self.interval)

    async def run_once(self) -> tuple[int, int]:
        """Returns (day summaries put, new tags put)."""
        config = self.ctx.config
        zone = config.coupons.timezone
        now = self.ctx.wall_clock()
        today = local_day(now, zone)
        window = max([r.window_days for r in config.coupons.tag_rules] + [_LOOKBACK_DAYS + 1])
        facts = await asyncio.to_thread(facts_since_blocking, self.ctx.db, now - window * 86400)
        rows = funnel_rows(
            [f for f in facts if f.at >= now - (_LOOKBACK_DAYS + 1) * 86400],
            zone=zone,
            fee_rate=config.linepay.fee_rate,
            message_cost_twd={c.name: c.message_cost_twd for c in config.campaigns},
            greeting_cost_twd={g.name: g.message_cost_twd for g in config.greetings},
            attribution_s=config.coupons.visit_attribution_h * 3600,
        )
        outbox = self._outbox
        summaries = 0
        for row in rows:
            if row.day is None or row.day >= today:
                continue  # only closed days
            await outbox.put(
                FUNNEL_STREAM,
                {"type": "daily_summary", **row.as_dict()},
                durability=Durability.CRITICAL,
                dedupe_key=f"funnel:{row.store_id}:{row.device_id}:{row.day.isoformat()}",
            )
            summaries += 1
        earned = earned_tags(config.coupons.tag_rules, member_purchases(facts), now=now)
        new = await asyncio.to_thread(assign_tags_blocking, self.ctx.db, earned, now)
        for tag in new:
            await outbox.put(
                FUNNEL_STREAM,
                {
                    "type": "member_tag",
                    "store_id": config.device.store_id,
                    "device_id": config.device.device_id,
                    "line_user_id": tag.line_user_id,
                    "tag": tag.tag,
                    "at": now,
                },
                durability=Durability.CRITICAL,
                dedupe_key=f"tag:{tag.line_user_id}:{tag.tag}",
            )
        if new:
            log.info("member tags earned", extra={"count": len(new)})
        return summaries, len(new)
