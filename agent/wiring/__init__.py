"""Wiring: which components this device runs, built from its config, and the adapters that
join the rooms (one module per capability: `ble`, `display`, `pos`, `membership`; health
mapping in `health`).

The only place that decides what runs; `agent.daemon` hands the list to the supervisor, which
starts each in the one TaskGroup (tasks named `shopedge.<component>.run`).

The POS API starts first: the display, BLE, the beacon advertiser, the conversion consumer, the
health uplink and MQTT sync are `LateComponent`s, imported and built once the API serves (or
after `LATE_START_CAP_S` if it cannot), so their modules (Pillow, zxing-cpp, the BLE frames,
aiomqtt) are off the path between a restart and the till's first answer (issue 17,
bench/footprint.py). Their modules load on a worker thread, on purpose: imported on the loop
they held it ~130 ms just after the API began to listen, and the till's first request waited
that long. They are built together and in order, as before, since some register services
others use (`display`, `screens`, `greeter`, `downlink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.context import AgentContext
from agent.supervisor import Component
from agent.wiring.membership import JournalSaleLookup
from agent.wiring.pos import PosBridge, ScannerFeed
from base.health import Level
from membership.coupons import CouponService, FunnelUpstream

__all__ = [
    "LATE_START_CAP_S",
    "LateBuilder",
    "LateComponent",
    "LateStart",
    "StatusReporter",
    "build_components",
]

log = logging.getLogger(__name__)

LATE_START_CAP_S = 2.0  # the late components start by then even if the POS API cannot listen


@dataclass(frozen=True)
class LateBuilder:
    """One late component: its name, the modules it needs, and how to build it."""

    name: str
    modules: tuple[str, ...]
    build: Callable[[], Component]


def _import_all(modules: Sequence[str]) -> None:
    for module in modules:
        importlib.import_module(module)


class LateStart:
    """Builds the late components, all at once and in order, when the POS API serves."""

    def __init__(
        self, builders: Sequence[LateBuilder], gate: asyncio.Event, cap_s: float = LATE_START_CAP_S
    ) -> None:
        self.names = [builder.name for builder in builders]
        self._builders = builders
        self._gate = gate
        self._cap_s = cap_s
        self._built: dict[str, Component] | None = None
        self._loading: asyncio.Task[None] | None = None

    def build(self) -> dict[str, Component]:
        """Build every late component now (idempotent; imports what is not loaded yet)."""
        if self._built is None:
            built: dict[str, Component] = {}
            for builder in self._builders:
                component = builder.build()
                if component.name != builder.name:
                    raise RuntimeError(f"late component {builder.name!r} built as {component.name!r}")
                built[builder.name] = component
            self._built = built
        return self._built

    def built(self, name: str) -> Component | None:
        return None if self._built is None else self._built.get(name)

    async def component(self, name: str) -> Component:
        if self._built is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cap_s):
                    await self._gate.wait()
            if self._loading is None or (self._loading.done() and self._loading.exception()):
                modules = [module for builder in self._builders for module in builder.modules]
                self._loading = asyncio.ensure_future(asyncio.to_thread(_import_all, modules))
            await asyncio.shield(self._loading)
        return self.build()[name]


class LateComponent:
    """Stands in the supervisor's list for one late component; runs it once built."""

    def __init__(self, name: str, stage: LateStart) -> None:
        self.name = name
        self.stage = stage

    @property
    def built(self) -> Component | None:
        """The real component, once the stage has built it (the demo looks for BLE's)."""
        return self.stage.built(self.name)

    async def run(self) -> None:
        component = await self.stage.component(self.name)
        await component.run()


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
    """Every component this device runs, in start order: the POS API's first, the rest late."""
    pos = PosBridge(ctx)
    ctx.services.setdefault("sale_lookup", JournalSaleLookup(ctx.db))
    components: list[Component] = [StatusReporter(ctx), CouponService(ctx), FunnelUpstream(ctx), pos]
    if ctx.config.pos.scanner != "none":
        components.append(ScannerFeed(ctx))
    stage = LateStart(_late_builders(ctx), pos.listening)
    components += [LateComponent(name, stage) for name in stage.names]
    return components


def _late_builders(ctx: AgentContext) -> list[LateBuilder]:
    """The late components, in the order they were built before (services first)."""

    def health_uplink() -> Component:
        from agent.wiring.health_uplink import HealthUplink

        return HealthUplink(ctx)

    def display() -> Component:
        from agent.wiring.display import build_display

        return build_display(ctx)

    def ble() -> Component:
        from agent.wiring.ble import BLEPresence

        return BLEPresence(ctx)

    def beacon() -> Component:
        from agent.wiring.beacon import BeaconAdvertising

        return BeaconAdvertising(ctx)

    def conversion() -> Component:
        from membership.conversion_consumer import ConversionConsumer
        from membership.greeter import Greeter

        Greeter(ctx)  # a service, not a loop: the conversion consumer hands it `beacon` events
        return ConversionConsumer(ctx)

    def sync() -> Component:
        from agent.sync import SyncService

        return SyncService(ctx)

    builders = [
        LateBuilder("health_uplink", ("agent.wiring.health_uplink",), health_uplink),
        LateBuilder("display", ("agent.wiring.display",), display),
    ]
    if ctx.config.ble.enabled:
        builders.append(LateBuilder("ble", ("agent.wiring.ble",), ble))
    if ctx.config.beacon.advertise:
        builders.append(LateBuilder("beacon", ("agent.wiring.beacon",), beacon))
    builders += [
        LateBuilder("conversion", ("membership.conversion_consumer", "membership.greeter"), conversion),
        LateBuilder("sync", ("agent.sync",), sync),
    ]
    return builders
