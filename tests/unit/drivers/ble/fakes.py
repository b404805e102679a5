"""Test doubles for the BLE shells: a stepped clock, a fake bleak scanner, a fake adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


class FakeTimer:
    """Time moves only when the code under test sleeps or waits."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        if event.is_set():
            return True
        self.t += max(within, 0.0)
        await asyncio.sleep(0)
        return event.is_set()


class FakeScanner:
    def __init__(self, bleak: FakeBleak, callback: Callable[[Any, Any], None]) -> None:
        self.bleak = bleak
        self.callback = callback
        self.running = False

    async def start(self) -> None:
        self.bleak.log.append("start")
        outcome = self.bleak.start_outcomes.pop(0) if self.bleak.start_outcomes else None
        if outcome is not None:
            raise outcome
        self.running = True
        self.bleak.current = self

    async def stop(self) -> None:
        self.bleak.log.append("stop")
        self.running = False
        if self.bleak.stop_error is not None:
            raise self.bleak.stop_error

    def advert(
        self,
        address: str = "AA:BB:CC:DD:EE:01",
        rssi: int = -60,
        md: dict[int, bytes] | None = None,
        sd: dict[str, bytes] | None = None,
    ) -> None:
        """Deliver an advert the way bleak does: through the detection callback."""
        assert self.running
        device = SimpleNamespace(address=address)
        adv = SimpleNamespace(rssi=rssi, manufacturer_data=md or {}, service_data=sd or {})
        self.callback(device, adv)


class FakeBleak:
    """A bleak stand-in: each `start()` takes the next scripted outcome (an exception or None)."""

    def __init__(self, *start_outcomes: BaseException | None) -> None:
        self.start_outcomes = list(start_outcomes)
        self.stop_error: BaseException | None = None
        self.log: list[str] = []
        self.made = 0
        self.current: FakeScanner | None = None

    def factory(self, callback: Callable[[Any, Any], None]) -> FakeScanner:
        self.made += 1
        return FakeScanner(self, callback)


class FakeControl:
    def __init__(self, log: list[str], error: BaseException | None = None) -> None:
        self.log = log
        self.error = error

    async def stop_discovery(self) -> None:
        self.log.append("stop_discovery")
        if self.error is not None:
            raise self.error

    async def power_cycle(self) -> None:
        self.log.append("power_cycle")
        if self.error is not None:
            raise self.error
