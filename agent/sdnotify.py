"""systemd's notify protocol, with no dependency: datagrams to the socket in $NOTIFY_SOCKET.

Owns three promises the agent unit (`Type=notify`, `WatchdogSec=`) relies on:
- READY=1 is sent once every component has reported its health (or after a grace period,
  so one silent component cannot make systemd kill a working agent at TimeoutStartSec);
- STATUS= carries the health board's one-line summary, updated when it changes;
- WATCHDOG=1 is sent by a task on the agent's own event loop at half of WATCHDOG_USEC, so a
  loop stuck in blocking code stops the pings and systemd restarts the service.

The decisions (address parsing, watchdog interval, readiness) are pure functions; `Notifier`
is the socket and `SystemdNotifier` the component that drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from base.health import ComponentHealth, HealthBoard

__all__ = [
    "Notifier",
    "Readiness",
    "SystemdNotifier",
    "notify_address",
    "readiness",
    "systemd_component",
    "watchdog_interval",
]

log = logging.getLogger(__name__)

# READY=1 is sent at the latest this long after start, below the unit's TimeoutStartSec=90s.
READY_GRACE_S = 60.0
# STATUS= is limited by systemd only by the datagram size; keep one readable line.
STATUS_MAX = 400


def notify_address(environ: Mapping[str, str]) -> str | bytes | None:
    """Where to send notifications: a path, an abstract name (leading '@' -> NUL), or None.

    Raises:
        ValueError: when $NOTIFY_SOCKET is set to something that is not a unix socket address.
    """
    value = environ.get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET must be an absolute path or @abstract name, got {value!r}")


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked for.

    WATCHDOG_PID, when set, names the process systemd watches; any other process stays quiet.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    watched = environ.get("WATCHDOG_PID", "")
    if watched and watched != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        raise ValueError(f"WATCHDOG_USEC must be an integer, got {usec!r}") from None
    if value <= 0:
        return None
    return value / 2_000_000


@dataclass(frozen=True, kw_only=True)
class Readiness:
    ready: bool
    missing: tuple[str, ...]


def readiness(
    *, expected: Collection[str], reported: Collection[str], elapsed: float, grace: float
) -> Readiness:
    """Ready when every expected component has reported (any level), or once `grace` has passed."""
    missing = tuple(sorted(set(expected) - set(reported)))
    return Readiness(ready=not missing or elapsed >= grace, missing=missing)


def format_message(fields: Mapping[str, str]) -> bytes:
    """KEY=value lines; values are single lines (newlines would start a new field)."""
    lines = []
    for key, value in fields.items():
        flat = " ".join(value.split("\n"))
        if key == "STATUS" and len(flat) > STATUS_MAX:
            flat = flat[: STATUS_MAX - 1] + "…"
        lines.append(f"{key}={flat}")
    return "\n".join(lines).encode()


class Notifier:
    """A datagram socket to systemd; a no-op when the agent is not started by systemd."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed = False
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        return cls(notify_address(os.environ if environ is None else environ))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str) -> bool:
        """Send one notification; False (logged once) when systemd cannot be reached."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto(format_message(fields), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd", extra={"error": repr(exc)})
            self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class SystemdNotifier:
    """The component that tells systemd the agent is ready, how it is, and that its loop lives."""

    name = "systemd"

    def __init__(
        self,
        health: HealthBoard,
        expected: Collection[str],
        notifier: Notifier,
        *,
        watchdog_s: float | None,
        grace: float = READY_GRACE_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.health = health
        self.expected = frozenset(expected) - {self.name}
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.grace = grace
        self._clock = clock or time.monotonic
        self._changed = asyncio.Event()
        self._ready = False
        health.listen(self._on_change)

    def _on_change(self, item: ComponentHealth) -> None:
        self._changed.set()

    async def run(self) -> None:
        started = self._clock()
        try:
            async with asyncio.TaskGroup() as group:
                if self.watchdog_s is not None:
                    group.create_task(self._watchdog(self.watchdog_s), name="shopedge.systemd.watchdog")
                await self._report(started)
        except asyncio.CancelledError:
            # Cancelled means the agent is shutting down (a crash is restarted, socket kept).
            self.notifier.send(STOPPING="1", STATUS="stopping")
            self.notifier.close()
            raise

    async def _report(self, started: float) -> None:
        last_status = ""
        while True:
            self._changed.clear()
            reported = {item.name for item in self.health.snapshot()}
            state = readiness(
                expected=self.expected, reported=reported, elapsed=self._clock() - started, grace=self.grace
            )
            if not self._ready and state.ready:
                self._ready = True
                if state.missing:
                    log.warning("ready without health from some components", extra={"missing": state.missing})
                status = self.health.summary()
                self.notifier.send(READY="1", STATUS=status)
                log.info("systemd notified ready", extra={"status": status})
            else:
                status = (
                    self.health.summary()
                    if self._ready
                    else "starting: waiting for " + ", ".join(state.missing)
                )
                if status != last_status:
                    self.notifier.send(STATUS=status)
            last_status = status
            wait = None if self._ready else max(0.0, self.grace - (self._clock() - started))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the shutdown's cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.send(WATCHDOG="1")
            await asyncio.sleep(interval)


def systemd_component(
    health: HealthBoard, expected: Collection[str], environ: Mapping[str, str] | None = None
) -> SystemdNotifier | None:
    """The notifier component when systemd asked for notifications, else None.

    A malformed $NOTIFY_SOCKET or $WATCHDOG_USEC is logged and ignored rather than stopping
    the agent: the till must keep taking payments.
    """
    env = os.environ if environ is None else environ
    try:
        notifier = Notifier(notify_address(env))
        watchdog_s = watchdog_interval(env, os.getpid())
    except ValueError as exc:
        log.warning("ignoring systemd notification settings", extra={"error": str(exc)})
        return None
    if not notifier.enabled:
        return None
    return SystemdNotifier(health, expected, notifier, watchdog_s=watchdog_s)
