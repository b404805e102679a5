"""The scanner's recovery ladder as data, and the pure decisions built on it.

Owns what the scanner shell does when BlueZ misbehaves; the shell (`scanner.py`) only performs
the steps. Three pure functions:

- `classify(exc)` names the fault from a bleak/D-Bus exception (no bleak import needed);
- `plan(fault, attempt, backoff_s)` picks the rung of `LADDER` for this attempt and turns it
  into a `Plan` (stop discovery? power-cycle? wait how long? which health to report?);
- `watchdog_action(now, last_seen, scanning_since)` says whether silence means a restart.

The ladder (after habluetooth's `scanner_bleak.py`, see the reference brief section 4):

1. stop discovery (a scan left running by the previous scanner is the usual cause of
   InProgress, bleak#1628), retry at once with a fresh scanner;
2. stop discovery and power-cycle the adapter (habluetooth resets on the 2nd attempt for
   Failed / InProgress / NotReady), retry;
3. stop discovery, give bluetoothd 5 s, retry;
4. and every attempt after: stop discovery, power-cycle, capped jittered backoff, retry,
   forever. Scanning never gives up and never exits; health stays red while it is down.

Faults that a power cycle cannot fix take their own path: no adapter (nothing to cycle, look
again every 30 s), bluetoothd restarted (its objects return within 1.5 s, then a new scanner).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum

from drivers._status import Condition
from drivers.ble.const import (
    NO_ADAPTER_RETRY_S,
    RECOVERY_BACKOFF_CAP_S,
    UNKNOWN_OBJECT_WAIT_S,
    WATCHDOG_SILENCE_S,
)

__all__ = [
    "LADDER",
    "Fault",
    "Plan",
    "RecoveryDelays",
    "Rung",
    "WatchdogAction",
    "classify",
    "plan",
    "scrub_addresses",
    "watchdog_action",
]


class Fault(StrEnum):
    IN_PROGRESS = "in_progress"  # org.bluez.Error.InProgress: a discovery is already running
    NOT_READY = "not_ready"  # org.bluez.Error.NotReady: adapter powered off or resetting
    FAILED = "failed"  # org.bluez.Error.Failed: the controller refused
    ADAPTER_GONE = "adapter_gone"  # "adapter 'hci0' not found": unplugged or renamed
    BLUEZ_RESTARTED = "bluez_restarted"  # ServiceUnknown / UnknownObject / NoReply: bluetoothd went away
    NO_ADAPTER = "no_adapter"  # no Bluetooth adapter, or no D-Bus system bus at all
    TIMEOUT = "timeout"  # start() did not return in time: D-Bus wedged
    SILENT = "silent"  # the watchdog heard nothing for WATCHDOG_SILENCE_S
    OTHER = "other"


@dataclass(frozen=True, kw_only=True, slots=True)
class Rung:
    """One step of the ladder; `delay_s` None means "the capped backoff"."""

    stop_discovery: bool
    power_cycle: bool
    delay_s: float | None
    why: str


LADDER: tuple[Rung, ...] = (
    Rung(stop_discovery=True, power_cycle=False, delay_s=0.0, why="clear a discovery left running"),
    Rung(stop_discovery=True, power_cycle=True, delay_s=0.0, why="reset the controller"),
    Rung(stop_discovery=True, power_cycle=False, delay_s=5.0, why="give bluetoothd time"),
    Rung(stop_discovery=True, power_cycle=True, delay_s=None, why="reset again, backing off"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """What the shell does before its next start attempt, and what health it reports meanwhile."""

    stop_discovery: bool
    power_cycle: bool
    delay_s: float
    level: Condition
    detail: str


_MAC = re.compile(r"(?i)(?<![0-9a-f])(?:[0-9a-f]{2}[:_-]){5}[0-9a-f]{2}(?![0-9a-f])")


def scrub_addresses(text: str) -> str:
    """Replace anything shaped like a device address (also BlueZ's dev_AA_BB_... paths)."""
    return _MAC.sub("<addr>", text)


def _describe(exc: BaseException) -> str:
    return scrub_addresses(f"{type(exc).__name__}: {exc}".strip()[:200])


def classify(exc: BaseException) -> tuple[Fault, str]:
    """Name the fault behind an exception from bleak or D-Bus, with a one-line description."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    dbus_error = str(getattr(exc, "dbus_error", "") or "")
    text = f"{dbus_error} {exc}"
    detail = _describe(exc)
    if "BleakBluetoothNotAvailableError" in names:
        return Fault.NO_ADAPTER, detail
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return Fault.NO_ADAPTER, "no D-Bus system bus (is dbus/bluetoothd running?)"
    if isinstance(exc, TimeoutError):
        return Fault.TIMEOUT, "BlueZ did not answer in time"
    if "org.bluez.Error.InProgress" in text:
        return Fault.IN_PROGRESS, detail
    if "org.bluez.Error.NotReady" in text:
        return Fault.NOT_READY, detail
    if re.search(r"adapter '?[^' ]*'? not found", text):
        return Fault.ADAPTER_GONE, detail
    if any(
        name in text
        for name in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.UnknownObject",
            "org.freedesktop.DBus.Error.NoReply",
            "org.freedesktop.DBus.Error.Disconnected",
        )
    ) or isinstance(exc, EOFError | BrokenPipeError | ConnectionResetError):
        return Fault.BLUEZ_RESTARTED, detail
    if "org.bluez.Error.Failed" in text:
        return Fault.FAILED, detail
    return Fault.OTHER, detail


def plan(fault: Fault, attempt: int, backoff_s: float) -> Plan:
    """The step before start attempt number `attempt + 1`, after `attempt` failures in a row.

    Args:
        fault: what went wrong last.
        attempt: consecutive failures so far, from 1.
        backoff_s: the shell's next capped, jittered backoff delay (used by the last rung).
    """
    if fault is Fault.NO_ADAPTER:
        return Plan(
            stop_discovery=False,
            power_cycle=False,
            delay_s=NO_ADAPTER_RETRY_S,
            level=Condition.DOWN,
            detail=f"no adapter; looking again every {NO_ADAPTER_RETRY_S:.0f} s",
        )
    if fault is Fault.BLUEZ_RESTARTED and attempt == 1:
        return Plan(
            stop_discovery=False,
            power_cycle=False,
            delay_s=UNKNOWN_OBJECT_WAIT_S,
            level=Condition.DOWN,
            detail="bluetoothd restarted; new scanner shortly",
        )
    if fault is Fault.ADAPTER_GONE:
        # Nothing to stop or power-cycle; wait for it to come back (USB re-plug, rename).
        return Plan(
            stop_discovery=False,
            power_cycle=False,
            delay_s=backoff_s,
            level=Condition.DOWN,
            detail=f"adapter gone; retry in {backoff_s:.0f} s",
        )
    rung = LADDER[min(attempt, len(LADDER)) - 1]
    delay = backoff_s if rung.delay_s is None else rung.delay_s
    steps = [
        step
        for step, on in (("stop discovery", rung.stop_discovery), ("power-cycle", rung.power_cycle))
        if on
    ]
    return Plan(
        stop_discovery=rung.stop_discovery,
        power_cycle=rung.power_cycle,
        delay_s=delay,
        level=Condition.DOWN,
        detail=f"{fault.value} (attempt {attempt}): {', '.join(steps)}; retry in {delay:.0f} s",
    )


class WatchdogAction(StrEnum):
    OK = "ok"
    RESTART = "restart"


def watchdog_action(now: float, last_seen: float | None, scanning_since: float) -> WatchdogAction:
    """Restart when nothing was heard for `WATCHDOG_SILENCE_S` since the later of the last
    advert and the start of this scan (a fresh scan gets the full window)."""
    reference = scanning_since if last_seen is None else max(last_seen, scanning_since)
    return WatchdogAction.RESTART if now - reference >= WATCHDOG_SILENCE_S else WatchdogAction.OK


class RecoveryDelays:
    """Seconds to wait before each recovery attempt: doubling from 2 s up to
    `RECOVERY_BACKOFF_CAP_S`, each cut by a random part of up to half so that the scanners of a
    fleet that lost power together do not retry in step. (The same policy as the agent's
    `base.backoff.Backoff`; drivers import no other project package, so the ladder keeps its own.)
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = min(RECOVERY_BACKOFF_CAP_S, 2.0 * 2.0 ** min(self._failures, 30))
        self._failures += 1
        return delay * (1 - 0.5 * self._rng.random())

    def reset(self) -> None:
        self._failures = 0
