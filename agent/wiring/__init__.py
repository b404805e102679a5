"""Wiring: which components this device runs, built from its config, and the adapters that
join the rooms (one module per capability: `ble`, `display`, `pos`, `membership`; health
mapping in `health`).

The only place that decides what runs; `agent.daemon` hands the list to the supervisor, which
starts each in the one TaskGroup (tasks named `shopedge.<component>.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent.context import AgentContext
from agent.supervisor import Component
from agent.sync import SyncService
from agent.wiring.beacon import BeaconAdvertising
from agent.wiring.ble import BLEPresence
from agent.wiring.display import build_display
from agent.wiring.health_uplink import HealthUplink
from agent.wiring.membership import JournalSaleLookup
from agent.wiring.pos import PosBridge, ScannerFeed
from base.health import Level
from membership.conversion_consumer import ConversionConsumer
from membership.coupons import CouponService, FunnelUpstream
from membership.greeter import Greeter

__all__ = ["StatusReporter", "build_components"]

log = logging.getLogger(__name__)


class StatusReporter:
    """Logs the one-line health summary whenever it changes, and every `interval` seconds."""

    name = "status"

    def __init__(self, ctx: AgentContext, interval: float = 60.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self._changed = asyncio.Event()
        ctx.health.listen(self._on_change)

    def _on_change(self, item: object) -> None:
        self._changed.set()

    async def run(self) -> None:
        self.ctx.health.set(self.name, Level.GREEN, "reporting")
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the event is set (a component reporting while it stops), and the
            # shutdown then waits a whole interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._changed.wait()
            self._changed.clear()
            log.info("health", extra={"status": self.ctx.health.summary()})


def build_components(ctx: AgentContext) -> list[Component]:
    """Every component this device runs, in start order."""
    components: list[Component] = [StatusReporter(ctx), HealthUplink(ctx)]
    components.append(build_display(ctx))
    if ctx.config.ble.enabled:
        components.append(BLEPresence(ctx))
    if ctx.config.beacon.advertise:
        components.append(BeaconAdvertising(ctx))
    ctx.services.setdefault("sale_lookup", JournalSaleLookup(ctx.db))
    Greeter(ctx)  # a service, not a loop: the conversion consumer hands it `beacon` events
    components.append(ConversionConsumer(ctx))
    components += [CouponService(ctx), FunnelUpstream(ctx)]
    components.append(PosBridge(ctx))
    if ctx.config.pos.scanner != "none":
        components.append(ScannerFeed(ctx))
    components.append(SyncService(ctx))
    return components
