"""The counter as the store's LINE Beacon: a BlueZ LEAdvertisingManager1 broadcaster over dbus-fast.

Owns registering the LINE Simple Beacon advert with bluetoothd, keeping its device message
current, and getting it back when it is lost. The bytes come from `simple_beacon`; the device
message comes from the caller (`message()`, asked every `MESSAGE_CHECK_S`): the agent wires in
the rotating code, this driver knows nothing about keys or slots.

An advert dies with its owner's D-Bus connection and with bluetoothd (which resets every
instance when it starts), so the shell watches three things and registers again after each:
`NameOwnerChanged` for org.bluez (bluetoothd stopped, then back), `Release()` (BlueZ dropped the
advert, e.g. the adapter went away) and the bus connection itself. A registration that fails
takes the scanner's recovery ladder (`recovery.classify` and `recovery.plan`): the same faults,
delays and power cycles; `status` says what is going on as plain data for the agent's health.

No `hcitool`: deprecated in BlueZ since 5.44 and absent from current distributions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from drivers._status import Condition, StatusSink
from drivers.ble.const import (
    ADVERT_CALL_TIMEOUT_S,
    ADVERT_INTERVAL_MS,
    DBUS_CALL_TIMEOUT_S,
    MESSAGE_CHECK_S,
)
from drivers.ble.recovery import Fault, RecoveryDelays, classify, plan, scrub_addresses
from drivers.ble.simple_beacon import advert, frame

__all__ = [
    "AdvertiseError",
    "AdvertiserStatus",
    "BeaconAdvertiser",
    "classify_advert",
]

log = logging.getLogger(__name__)

ADVERT_PATH = "/org/shopedge/beacon/advert0"
_MANAGER = "org.bluez.LEAdvertisingManager1"
_BLUEZ = "org.bluez"


@dataclass(frozen=True, kw_only=True, slots=True)
class AdvertiserStatus:
    """Plain data for the agent's health board (it maps the condition to its own levels):
    OK while advertising, DEGRADED while starting, DOWN while the advert is lost."""

    condition: Condition
    detail: str


class AdvertiseError(Exception):
    """BlueZ answered a registration with a D-Bus error; `dbus_error` is its name."""

    def __init__(self, dbus_error: str, text: str) -> None:
        super().__init__(f"{dbus_error}: {text}".strip(": "))
        self.dbus_error = dbus_error


def classify_advert(exc: BaseException) -> tuple[Fault, str]:
    """`recovery.classify`, plus the two refusals that only advertising meets."""
    name = str(getattr(exc, "dbus_error", ""))
    if name == "org.bluez.Error.NotPermitted":
        return Fault.FAILED, "BlueZ has no free advertising instance (another advert holds them)"
    if name == "org.bluez.Error.InvalidLength":
        return Fault.FAILED, "the advert does not fit the controller's advertising data"
    return classify(exc)


Sleep = Callable[[float], Awaitable[None]]


class PowerCycle(Protocol):
    """The part of `scanner.AdapterControl` the ladder needs here."""

    async def power_cycle(self) -> None: ...


def air_interval_ms(interval_ms: int) -> float:
    """What BlueZ puts on the air for a whole-millisecond interval (truncated 0.625 ms units)."""
    return int(interval_ms / 0.625) * 0.625


class BeaconAdvertiser:
    """Advertises `hwid` with the device message `message()` until cancelled; never gives up."""

    name = "beacon"

    def __init__(
        self,
        *,
        hwid: bytes,
        message: Callable[[], bytes],
        adapter: str = "hci0",
        bus_address: str | None = None,
        control: PowerCycle | None = None,
        sleep: Sleep = asyncio.sleep,
        check_every: float = MESSAGE_CHECK_S,
        interval_ms: int = ADVERT_INTERVAL_MS,
        backoff: RecoveryDelays | None = None,
        health: StatusSink | None = None,
    ) -> None:
        advert(hwid, message())  # a bad HWID or message fails here, at wiring, not in the loop
        self.hwid = hwid
        self.adapter = adapter
        self.path = f"/org/bluez/{adapter}"
        self._message = message
        self._bus_address = bus_address  # None: the system bus (tests point it at a private one)
        self._control = control  # None: the ladder skips its power cycles
        self._sleep = sleep
        self._check_every = check_every
        self._interval_ms = interval_ms
        self._backoff = backoff or RecoveryDelays()
        self._health = health  # the agent's health board, if it wants to hear
        self._failures = 0
        self.registrations = 0
        self.faults: list[Fault] = []
        self.current_message = b""
        self._status = AdvertiserStatus(condition=Condition.DEGRADED, detail=f"starting on {adapter}")

    @property
    def status(self) -> AdvertiserStatus:
        return self._status

    def announce(self) -> None:
        """Report the starting condition now (the health board lists the component at once)."""
        self._set(self._status.condition, self._status.detail)

    def _set(self, condition: Condition, detail: str) -> None:
        self._status = AdvertiserStatus(condition=condition, detail=detail)
        if self._health is not None:
            self._health.set(self.name, condition, detail)

    async def run(self) -> None:
        """Advertise forever: register, follow the message, and register again after each loss."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(exc)

    async def _failed(self, exc: BaseException) -> None:
        fault, why = classify_advert(exc)
        self._failures += 1
        self.faults.append(fault)
        step = plan(fault, self._failures, self._backoff.next_delay())
        self._set(Condition.DOWN, f"{step.detail} [{why}]".replace("new scanner", "advertising again"))
        log.warning(
            "LINE Beacon advert not registered",
            extra={"fault": fault.value, "attempt": self._failures, "error": why, "next": step.detail},
        )
        if step.power_cycle and self._control is not None:
            try:
                await self._control.power_cycle()
            except asyncio.CancelledError:
                raise
            except Exception as cycle_exc:
                log.warning(
                    "BLE recovery step failed",
                    extra={"step": "power cycle", "error": scrub_addresses(repr(cycle_exc))[:200]},
                )
        await self._sleep(step.delay_s)

    async def _session(self) -> None:
        """One registration's life: returns when the advert is lost, raises if it cannot start."""
        from dbus_fast import BusType, MessageType
        from dbus_fast.aio import MessageBus

        from drivers.ble._bluez_advert import Advertisement

        async with asyncio.timeout(DBUS_CALL_TIMEOUT_S):
            bus = await MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM).connect()
        lost = asyncio.Event()
        bluez_back = asyncio.Event()
        why: list[str] = []

        def lose(reason: str) -> None:
            if not lost.is_set():
                why.append(reason)
                lost.set()

        def on_signal(msg: Any) -> None:
            if msg.message_type != MessageType.SIGNAL:
                return
            if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == _BLUEZ:
                _, old_owner, new_owner = msg.body
                if not new_owner:
                    lose("bluetoothd stopped")
                else:
                    bluez_back.set()
                    if old_owner:  # replaced in one step: the new bluetoothd has no adverts
                        lose("bluetoothd restarted")
            elif (
                msg.member == "InterfacesRemoved"
                and msg.body
                and msg.body[0] == self.path
                and _MANAGER in msg.body[1]
            ):
                lose(f"adapter {self.adapter} went away")

        registered = False
        try:
            bus.add_message_handler(on_signal)
            for rule in (
                f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{_BLUEZ}'",
                f"type='signal',sender='{_BLUEZ}',interface='org.freedesktop.DBus.ObjectManager',"
                "member='InterfacesRemoved'",
            ):
                await self._call(
                    bus,
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "AddMatch",
                    "s",
                    [rule],
                )
            self.current_message = self._message()
            built = advert(self.hwid, self.current_message)
            obj = Advertisement(
                service_uuid=built.service_uuid,
                frame=built.frame,
                interval_ms=self._interval_ms,
                on_release=lambda: lose("BlueZ released the advert"),
            )
            bus.export(ADVERT_PATH, obj)
            await self._call(
                bus, _BLUEZ, self.path, _MANAGER, "RegisterAdvertisement", "oa{sv}", [ADVERT_PATH, {}]
            )
            registered = True
            self.registrations += 1
            if self._failures:
                log.info("LINE Beacon advertising recovered", extra={"after_failures": self._failures})
            self._failures = 0
            self._backoff.reset()
            air = air_interval_ms(self._interval_ms)
            self._set(
                Condition.OK,
                f"advertising LINE Beacon {self.hwid.hex()} on {self.adapter} every {air} ms",
            )
            log.info("LINE Beacon advertising", extra={"hwid": self.hwid.hex(), "adapter": self.adapter})
            await self._follow(bus, obj, lost, lose)
            reason = why[0]
            # BlueZ already forgot the advert when it stopped or released it: nothing to unregister.
            registered = reason not in (
                "bluetoothd stopped",
                "bluetoothd restarted",
                "BlueZ released the advert",
            )
            self._set(Condition.DOWN, f"advert lost: {reason}; registering again")
            log.warning("LINE Beacon advert lost", extra={"reason": reason})
            if reason == "bluetoothd stopped":
                self._set(Condition.DOWN, "bluetoothd stopped; advertising again when it returns")
                await bluez_back.wait()
                self._set(Condition.DEGRADED, "bluetoothd is back; registering the advert again")
        finally:
            if registered:
                with contextlib.suppress(Exception):
                    await self._call(
                        bus, _BLUEZ, self.path, _MANAGER, "UnregisterAdvertisement", "o", [ADVERT_PATH]
                    )
            bus.disconnect()

    async def _follow(self, bus: Any, obj: Any, lost: asyncio.Event, lose: Callable[[str], None]) -> None:
        """Keep the device message current until the advert is lost or the bus closes."""
        disconnected = asyncio.ensure_future(bus.wait_for_disconnect())
        lost_wait = asyncio.ensure_future(lost.wait())
        try:
            while not lost.is_set():
                await asyncio.wait(
                    [disconnected, lost_wait], timeout=self._check_every, return_when=asyncio.FIRST_COMPLETED
                )
                if disconnected.done():
                    lose("the D-Bus connection closed")
                if lost.is_set():
                    return
                message = self._message()
                if message != self.current_message:
                    obj.update_frame(frame(self.hwid, message))
                    self.current_message = message
                    log.debug("LINE Beacon device message changed")
        finally:
            disconnected.cancel()
            lost_wait.cancel()

    @staticmethod
    async def _call(
        bus: Any, destination: str, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> None:
        from dbus_fast import Message, MessageType

        async with asyncio.timeout(ADVERT_CALL_TIMEOUT_S):
            reply = await bus.call(
                Message(
                    destination=destination,
                    path=path,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=body,
                )
            )
        if reply is not None and reply.message_type == MessageType.ERROR:
            raise AdvertiseError(str(reply.error_name), " ".join(str(part) for part in reply.body))
