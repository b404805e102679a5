"""The advert source interface shared by the bleak scanner and the capture replay.

Owns the `Advert` record, the `AdvertSource` protocol, the `Timer` that lets tests step a
fake clock, and `QueueSource`: the one callback path (`_push`) both sources feed, ending in a
bounded queue that `next_advert` drains. `open_source(config)` alone picks the driver and is
the only place bleak gets imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from drivers._status import Condition
from drivers.ble.const import ADVERT_QUEUE_SIZE

if TYPE_CHECKING:
    from drivers.ble.config import BLEConfig

__all__ = [
    "Advert",
    "AdvertSource",
    "QueueSource",
    "RealTimer",
    "SourceStatus",
    "Timer",
    "open_source",
    "replay_path",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Advert:
    """One advertisement as heard. `address` is raw here and must not go further than the engine."""

    address: str
    rssi: int
    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]
    at: float  # the source's monotonic time base


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceStatus:
    level: Condition
    detail: str


class Timer(Protocol):
    """Time for the sources: real in production, stepped by hand in unit tests."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        """Wait for `event` up to `within` seconds; True if it was set."""
        ...


class RealTimer:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        if event.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(within, 0.0)):
                await event.wait()
        return event.is_set()


class AdvertSource(Protocol):
    """Where adverts come from. An async context manager; `next_advert` is polled in a loop.

    Polled with a deadline rather than iterated with `async for`: the BLE loop must wake at
    every clock tick even when no advert comes (that is how absence is decided), and the
    scanner's recovery runs inside the same call, so the source needs no task of its own.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def next_advert(self, within: float) -> Advert | None:
        """The next advert, or None when `within` seconds (source time) pass without one."""
        ...

    def now(self) -> float:
        """Monotonic seconds in the source's time base (a replay runs faster than real time)."""
        ...

    @property
    def virtual_time(self) -> bool:
        """True when `now()` is not real time (a replay): event stamps then follow the source."""
        ...

    @property
    def status(self) -> SourceStatus: ...


class QueueSource:
    """The callback path shared by every source: `_push` -> bounded queue -> `next_advert`."""

    virtual_time = False

    def __init__(self, timer: Timer, queue_size: int = ADVERT_QUEUE_SIZE) -> None:
        self.timer = timer
        self._queue: asyncio.Queue[Advert] = asyncio.Queue(maxsize=queue_size)
        self._arrived = asyncio.Event()
        self.last_seen: float | None = None
        self.received = 0
        self.dropped = 0

    def now(self) -> float:
        return self.timer.now()

    def _push(
        self,
        address: str,
        rssi: int,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
    ) -> None:
        """Called for every advert (from bleak's callback or the replay); never blocks."""
        now = self.now()
        advert = Advert(
            address=address, rssi=rssi, manufacturer_data=manufacturer_data, service_data=service_data, at=now
        )
        if self._queue.full():
            self._queue.get_nowait()  # shed the oldest: fresh RSSI matters more than old
            self.dropped += 1
        self._queue.put_nowait(advert)
        self.received += 1
        self.last_seen = now
        self._arrived.set()

    async def _pop(self, within: float) -> Advert | None:
        if self._queue.empty():
            self._arrived.clear()
            await self.timer.wait(self._arrived, within)
        if self._queue.empty():
            return None
        return self._queue.get_nowait()


def replay_path(config: BLEConfig) -> Path:
    """The capture `driver = "replay"` plays: `ble.replay_file`, else the bundled demo shop.
    One rule for the daemon and for whoever checks it (the doctor)."""
    from drivers.ble.replay import DEMO_CAPTURE

    return config.replay_file or DEMO_CAPTURE


def open_source(config: BLEConfig, *, timer: Timer | None = None) -> AdvertSource:
    """The configured source: the bleak scanner, or a replay of a capture (the demo's by default)."""
    timer = timer or RealTimer()
    if config.driver == "replay":
        from drivers.ble.replay import ReplaySource

        return ReplaySource(
            replay_path(config), speed=config.replay_speed, loop=config.replay_loop, timer=timer
        )
    from drivers.ble.scanner import BleakSource

    return BleakSource(adapter=config.adapter, scanning_mode=config.scanning_mode, timer=timer)
