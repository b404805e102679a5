"""The BLE adapter: the advert source (bleak or replay) into the presence engine, events out.

Owns the one BLE loop of the agent: poll the source until the next 1 s tick, decode each
advert, feed the engine, tick it, emit its events to the telemetry sink (the outbox), and
report health. Health combines the scanner's own status (red while scanning is down, with
"no adapter" when there is none) with the store beacon watch (amber while one of this
store's beacons is silent), so the agent never says "online" while the radio is dead.

The raw address of an advert goes into the engine and nowhere else: it is never logged,
stored or put in an event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.live_config import live_config
from agent.ops_http import ops_facts
from agent.wiring.health import driver_level
from agent.wiring.presence_sink import MemorySink, OutboxSink, TelemetrySink
from base.health import Level
from drivers.ble.base import AdvertSource, SourceStatus, Timer, open_source
from drivers.ble.const import TICK_S
from drivers.ble.frames import decode_advert
from drivers.ble.presence import Event, PresenceEngine, PresenceSettings

if TYPE_CHECKING:
    from agent.config import ShopEdgeConfig
    from agent.context import AgentContext

__all__ = ["BLEPresence", "settings_from_config"]

log = logging.getLogger(__name__)

# The presence thresholds the cloud may change live: the engine takes new settings at once.
PRESENCE_LIVE_KEYS = (
    "presence.enter_rssi",
    "presence.exit_rssi",
    "presence.enter_sightings",
    "presence.away_after_s",
    "presence.stay_interval_s",
)


def settings_from_config(config: ShopEdgeConfig) -> PresenceSettings:
    p = config.presence
    return PresenceSettings(
        enter_rssi=p.enter_rssi,
        exit_rssi=p.exit_rssi,
        enter_sightings=p.enter_sightings,
        away_after_s=p.away_after_s,
        stay_interval_s=p.stay_interval_s,
        store_beacon_hwids=tuple(config.ble.store_beacon_hwids),
        beacon_silent_after_s=config.ble.beacon_silent_after_s,
    )


class BLEPresence:
    """Supervised component `ble`. `sink`/`timer`/`source` are injectable for tests."""

    name = "ble"

    def __init__(
        self,
        ctx: AgentContext,
        *,
        sink: TelemetrySink | None = None,
        timer: Timer | None = None,
        source: AdvertSource | None = None,
    ) -> None:
        self.ctx = ctx
        self._sink = sink
        self._timer = timer
        self._source = source
        self.engine: PresenceEngine | None = None
        self.emitted = 0
        self.emit_failures = 0

    def _resolve_sink(self) -> tuple[TelemetrySink, str]:
        if self._sink is not None:
            return self._sink, ""
        outbox = self.ctx.services.get("outbox")
        if outbox is not None:
            return OutboxSink(outbox), ""
        return MemorySink(), "no outbox: events kept in memory only"

    async def run(self) -> None:
        config = self.ctx.config
        sink, sink_problem = self._resolve_sink()
        source = self._source or open_source(config.ble, timer=self._timer)
        self.ctx.health.set(self.name, Level.AMBER, "starting")
        async with source:
            now0, wall0 = source.now(), self.ctx.wall_clock()

            def wall() -> float:
                # A replay runs on its own (faster) clock; events carry that time, not ours.
                return wall0 + (source.now() - now0) if source.virtual_time else self.ctx.wall_clock()

            engine = self.engine = PresenceEngine(settings_from_config(config), now=now0, wall=wall())
            live = live_config(self.ctx.services, config)

            def follow(cfg: ShopEdgeConfig) -> None:
                engine.settings = settings_from_config(cfg)

            live.follow("ble", PRESENCE_LIVE_KEYS, follow)
            try:
                await self._loop(source, engine, wall, sink, sink_problem, now0)
            finally:
                live.unfollow("ble")

    async def _loop(
        self,
        source: AdvertSource,
        engine: PresenceEngine,
        wall: Callable[[], float],
        sink: TelemetrySink,
        sink_problem: str,
        now0: float,
    ) -> None:
        next_tick = now0 + TICK_S
        self._report(source.status, engine, sink_problem)
        facts = ops_facts(self.ctx)
        while True:
            advert = await source.next_advert(max(0.0, next_tick - source.now()))
            events: list[Event] = []
            if advert is not None:
                events = engine.observe(
                    now=advert.at,
                    wall=wall(),
                    address=advert.address,
                    rssi=advert.rssi,
                    frames=decode_advert(advert.manufacturer_data, advert.service_data),
                )
            now = source.now()
            if now >= next_tick:
                events += engine.tick(now=now, wall=wall())
                next_tick = now + TICK_S
                self._report(source.status, engine, sink_problem)
                # "Last heard" is for people reading a real clock: a replay's virtual seconds
                # run `speed` times faster, so its age is scaled back, never into the future.
                wall_now = self.ctx.wall_clock()
                speed = float(getattr(source, "speed", 1.0)) if source.virtual_time else 1.0
                for hwid, seen in engine.store_beacons_heard().items():
                    facts.record_beacon(hwid, at=wall_now - max(0.0, now - seen) / speed)
            for event in events:
                await self._emit(sink, event)

    async def _emit(self, sink: TelemetrySink, event: Event) -> None:
        payload = event.payload()
        try:
            await sink.emit(event.stream, payload)
        except Exception as exc:
            # Telemetry is sheddable (the outbox refuses it when the disk budget is reached); the
            # scanner keeps running. Logged on the first failure and every 1000th, not per event.
            self.emit_failures += 1
            if self.emit_failures % 1000 == 1:
                log.warning(
                    "BLE events not queued",
                    extra={"stream": event.stream, "failures": self.emit_failures, "error": repr(exc)[:200]},
                )
            return
        self.emitted += 1
        if event.stream == "beacon_health":
            silent = payload["kind"] == "beacon_silent"
            log.log(
                logging.WARNING if silent else logging.INFO,
                "store beacon silent" if silent else "store beacon restored",
                extra={"hwid": payload["hwid"], "unseen_s": payload["unseen_s"]},
            )

    def _report(self, status: SourceStatus, engine: PresenceEngine, sink_problem: str) -> None:
        level, detail = driver_level(status.level), status.detail
        silent = engine.silent_store_beacons()
        if silent and level is Level.GREEN:
            level = Level.AMBER
        if silent:
            detail += f"; store beacon {', '.join(silent)} silent"
        if sink_problem:
            level = Level.AMBER if level is Level.GREEN else level
            detail += f"; {sink_problem}"
        self.ctx.health.set(self.name, level, detail)
