"""Component `health_uplink`: the device's health and outbox depth on the `health` stream.

What the chain's cloud shows per device (`shopedge cloud devices`, the HQ page): the overall
level, each component's level and detail, and how many records wait in the outbox, so HQ
sees a backlogged counter. Telemetry: shed first under disk pressure and dropped unsent after
a day, never at the expense of a payment; one record every `interval` seconds and one soon
after start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent import __version__
from agent.context import AgentContext
from base.health import Level
from offline_queue import Durability

__all__ = ["HEALTH_STREAM", "HealthUplink", "health_payload"]

log = logging.getLogger(__name__)

HEALTH_STREAM = "health"
_TTL_S = 24 * 3600.0


def health_payload(ctx: AgentContext, outbox_depth: int | None, now: float) -> dict[str, Any]:
    return {
        "overall": str(ctx.health.overall()),
        "components": {
            item.name: {"level": str(item.level), "detail": item.detail} for item in ctx.health.snapshot()
        },
        "outbox_depth": outbox_depth,
        "agent_version": __version__,
        "at": now,
    }


class HealthUplink:
    name = "health_uplink"

    def __init__(self, ctx: AgentContext, *, interval: float = 300.0, first_after: float = 10.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self.first_after = first_after

    async def run(self) -> None:
        self.ctx.health.set(self.name, Level.GREEN, f"every {self.interval:.0f} s")
        await asyncio.sleep(self.first_after)
        while True:
            await self.send_once()
            await asyncio.sleep(self.interval)

    async def send_once(self) -> bool:
        """Put one health record; False (logged) when there is no outbox or it refuses."""
        outbox = self.ctx.services.get("outbox")
        if outbox is None:
            return False
        now = self.ctx.wall_clock()
        try:
            depth = int(await outbox.depth())
            await outbox.put(
                HEALTH_STREAM,
                health_payload(self.ctx, depth, now),
                durability=Durability.TELEMETRY,
                expires_at=now + _TTL_S,
            )
        except Exception:
            log.exception("health record not queued")
            return False
        return True
