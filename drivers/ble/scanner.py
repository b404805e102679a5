"""The bleak scanner shell: BlueZ discovery with a silence watchdog and the recovery ladder.

Owns the I/O around `bleak.BleakScanner` and nothing the pure modules decide: faults are
named by `recovery.classify`, the step to take by `recovery.plan`, a restart for silence by
`recovery.watchdog_action`. Everything runs inside `next_advert`, polled by the one BLE
component loop: no task of its own, and a pending retry never blocks the loop (the caller
keeps ticking presence while the adapter is down). Scanning never stops for good; while it
is down `status` is red and says why.

Thin on purpose: the scanner factory and the adapter control (StopDiscovery, power cycle
over D-Bus) are injected, so the ladder is tested against a fake bleak that raises each
BlueZ error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from drivers._status import Condition
from drivers.ble.base import Advert, QueueSource, RealTimer, SourceStatus, Timer
from drivers.ble.const import (
    DBUS_CALL_TIMEOUT_S,
    POWER_CYCLE_OFF_S,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    WATCHDOG_INTERVAL_S,
)
from drivers.ble.recovery import (
    Fault,
    RecoveryDelays,
    WatchdogAction,
    classify,
    plan,
    scrub_addresses,
    watchdog_action,
)

__all__ = ["AdapterControl", "BleakSource", "BlueZAdapterControl", "ScannerLike"]

log = logging.getLogger(__name__)

DetectionCallback = Callable[[Any, Any], None]


class ScannerLike(Protocol):
    """The part of `bleak.BleakScanner` the shell uses."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[[DetectionCallback], ScannerLike]


class AdapterControl(Protocol):
    """Direct BlueZ adapter operations of the recovery ladder."""

    async def stop_discovery(self) -> None: ...

    async def power_cycle(self) -> None: ...


class BlueZAdapterControl:
    """StopDiscovery and Powered off/on on `org.bluez.Adapter1`, over the system D-Bus."""

    def __init__(
        self, adapter: str, sleep: Callable[[float], Any] = asyncio.sleep, *, bus_address: str | None = None
    ) -> None:
        self.path = f"/org/bluez/{adapter}"
        self._sleep = sleep
        self._bus_address = bus_address  # None: the system bus (tests point it at a private bus)

    async def _call(
        self, interface: str, member: str, signature: str = "", body: list[Any] | None = None
    ) -> None:
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        async with asyncio.timeout(DBUS_CALL_TIMEOUT_S):
            bus = await MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination="org.bluez",
                        path=self.path,
                        interface=interface,
                        member=member,
                        signature=signature,
                        body=body or [],
                    )
                )
            finally:
                bus.disconnect()
        if reply is not None and reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member} on {self.path}: {reply.error_name} {reply.body}")

    async def stop_discovery(self) -> None:
        await self._call("org.bluez.Adapter1", "StopDiscovery")

    async def _powered(self, on: bool) -> None:
        from dbus_fast import Variant

        await self._call(
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            ["org.bluez.Adapter1", "Powered", Variant("b", on)],
        )

    async def power_cycle(self) -> None:
        await self._powered(False)
        await self._sleep(POWER_CYCLE_OFF_S)
        await self._powered(True)


def _bleak_factory(adapter: str, mode: Literal["active", "passive"]) -> ScannerFactory:
    def make(callback: DetectionCallback) -> ScannerLike:
        from bleak import BleakScanner
        from bleak.args.bluez import BlueZScannerArgs, OrPattern
        from bleak.assigned_numbers import AdvertisementDataType as T

        bluez: BlueZScannerArgs = {"adapter": adapter}
        if mode == "active":
            # Every advert, not only changed data: presence needs steady sightings of a beacon
            # whose payload never changes (bleak defaults to DuplicateData=False).
            bluez["filters"] = {"DuplicateData": True}
        else:
            # Passive scanning needs AdvertisementMonitor patterns: the three beacon families,
            # plus the usual LE flags so phones still count towards footfall.
            bluez["or_patterns"] = [
                OrPattern(0, T.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00\x02\x15"),
                OrPattern(0, T.SERVICE_DATA_UUID16, b"\x6f\xfe"),
                OrPattern(0, T.SERVICE_DATA_UUID16, b"\xaa\xfe"),
                OrPattern(0, T.FLAGS, b"\x06"),
                OrPattern(0, T.FLAGS, b"\x1a"),
                OrPattern(0, T.FLAGS, b"\x02"),
            ]
        return BleakScanner(callback, scanning_mode=mode, bluez=bluez)

    return make


class BleakSource(QueueSource):
    """Adverts from BlueZ. Starts lazily in `next_advert`, so every start failure takes the ladder."""

    def __init__(
        self,
        *,
        adapter: str = "hci0",
        scanning_mode: Literal["active", "passive"] = "active",
        timer: Timer | None = None,
        scanner_factory: ScannerFactory | None = None,
        control: AdapterControl | None = None,
        backoff: RecoveryDelays | None = None,
    ) -> None:
        timer = timer or RealTimer()
        super().__init__(timer)
        self.adapter = adapter
        self.scanning_mode = scanning_mode
        self._factory = scanner_factory or _bleak_factory(adapter, scanning_mode)
        self._control = control or BlueZAdapterControl(adapter, timer.sleep)
        self._backoff = backoff or RecoveryDelays()
        self._scanner: ScannerLike | None = None
        self._scanning_since = 0.0
        self._next_watchdog = 0.0
        self._retry_at = 0.0
        self._pending: tuple[bool, bool] = (False, False)  # (stop discovery, power cycle) before retry
        self._failures = 0
        self.restarts = 0
        self.faults: list[Fault] = []
        self._status = SourceStatus(
            level=Condition.DEGRADED, detail=f"starting {scanning_mode} scan on {adapter}"
        )

    @property
    def status(self) -> SourceStatus:
        return self._status

    @property
    def scanning(self) -> bool:
        return self._scanner is not None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop_scanner()

    def _on_detection(self, device: Any, advertisement: Any) -> None:
        """bleak's detection callback: the same path as the replay (`_push`)."""
        self._push(
            str(device.address),
            int(advertisement.rssi),
            advertisement.manufacturer_data,
            advertisement.service_data,
        )

    async def next_advert(self, within: float) -> Advert | None:
        now = self.now()
        if self._scanner is None:
            if now < self._retry_at:
                await self.timer.sleep(min(within, self._retry_at - now))
                return None
            await self._attempt_start()
            if self._scanner is None:
                return None
        elif now >= self._next_watchdog:
            self._next_watchdog = now + WATCHDOG_INTERVAL_S
            if watchdog_action(now, self.last_seen, self._scanning_since) is WatchdogAction.RESTART:
                await self._restart_silent(now)
                return None
        advert = await self._pop(within)
        if advert is not None and self._status.level is not Condition.OK:
            self._status = SourceStatus(
                level=Condition.OK, detail=f"scanning ({self.scanning_mode}) on {self.adapter}"
            )
        return advert

    async def _attempt_start(self) -> None:
        stop_first, cycle_first = self._pending
        self._pending = (False, False)
        if stop_first:
            await self._control_step("stop discovery", self._control.stop_discovery)
        if cycle_first:
            await self._control_step("power cycle", self._control.power_cycle)
        scanner: ScannerLike | None = None
        try:
            scanner = self._factory(self._on_detection)
            async with asyncio.timeout(START_TIMEOUT_S):
                await scanner.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(exc, scanner)
            return
        self._scanner = scanner
        now = self.now()
        self._scanning_since = now
        self._next_watchdog = now + WATCHDOG_INTERVAL_S
        if self._failures:
            log.info(
                "BLE scanning recovered", extra={"after_failures": self._failures, "adapter": self.adapter}
            )
        self._failures = 0
        self._backoff.reset()
        if self._status.level is Condition.DOWN:
            self._status = SourceStatus(
                level=Condition.DEGRADED, detail="scanning again; waiting for adverts"
            )
        elif self._status.level is not Condition.OK:
            self._status = SourceStatus(
                level=Condition.DEGRADED, detail=f"scanning ({self.scanning_mode}); no adverts yet"
            )

    async def _failed(self, exc: BaseException, scanner: ScannerLike | None) -> None:
        fault, why = classify(exc)
        self._failures += 1
        self.faults.append(fault)
        if scanner is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await scanner.stop()  # a half-started scanner must not keep a discovery session
        step = plan(fault, self._failures, self._backoff.next_delay())
        self._pending = (step.stop_discovery, step.power_cycle)
        self._retry_at = self.now() + step.delay_s
        self._status = SourceStatus(level=step.level, detail=f"{step.detail} [{why}]")
        log.warning(
            "BLE scan start failed",
            extra={"fault": fault.value, "attempt": self._failures, "error": why, "next": step.detail},
        )

    async def _restart_silent(self, now: float) -> None:
        silence = now - (self.last_seen if self.last_seen is not None else self._scanning_since)
        self.restarts += 1
        self.faults.append(Fault.SILENT)
        log.warning("BLE watchdog: no adverts, restarting the scanner", extra={"silent_s": round(silence)})
        await self._stop_scanner()
        self._pending = (True, False)  # BlueZ may still think a discovery runs (bluez/bluez#343)
        self._retry_at = now
        self._status = SourceStatus(
            level=Condition.DEGRADED,
            detail=f"restarting: no adverts for {silence:.0f} s (restart {self.restarts})",
        )

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await scanner.stop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            fault, why = classify(exc)
            log.warning("BLE scan stop failed", extra={"fault": fault.value, "error": why})

    async def _control_step(self, what: str, step: Callable[[], Any]) -> None:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if "No discovery started" in str(exc):
                return  # nothing was left running: the normal case after a clean stop
            # The ladder goes on: the retry that follows shows whether the step mattered.
            log.warning(
                "BLE recovery step failed",
                extra={"step": what, "error": scrub_addresses(f"{type(exc).__name__}: {exc}")[:200]},
            )
        else:
            log.info("BLE recovery step done", extra={"step": what, "adapter": self.adapter})
