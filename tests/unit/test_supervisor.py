"""The supervisor restarts a crashed component with backoff and reports it red meanwhile."""

from __future__ import annotations

import asyncio

from agent.supervisor import Supervisor
from base.backoff import Backoff
from base.health import HealthBoard, Level


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"boom {self.runs}")
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped.set()


async def test_crashed_component_is_restarted_and_stopped_cleanly() -> None:
    health = HealthBoard()
    delays: list[float] = []
    seen: list[Level] = []
    health.listen(lambda item: seen.append(item.level))

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    flaky = Flaky(failures=3)
    sup = Supervisor([flaky], health, backoff_factory=lambda: Backoff(base=1, jitter=0), sleep=fake_sleep)
    task = asyncio.create_task(sup.run())
    for _ in range(100):
        await asyncio.sleep(0)
    assert flaky.runs == 4 and sup.restarts["flaky"] == 3
    assert delays == [1, 2, 4]
    assert seen and all(level is Level.RED for level in seen)
    sup.stop()
    await task
    assert flaky.stopped.is_set()


def test_backoff_is_capped_and_resets() -> None:
    b = Backoff(base=1, cap=5, jitter=0)
    assert [b.next_delay() for _ in range(5)] == [1, 2, 4, 5, 5]
    b.reset()
    assert b.next_delay() == 1


def test_health_summary_and_overall() -> None:
    board = HealthBoard(clock=lambda: 0.0)
    board.set("pos", Level.GREEN, "listening")
    board.set("mqtt", Level.AMBER, "disconnected")
    assert board.overall() is Level.AMBER
    assert board.summary() == "amber: mqtt amber (disconnected); pos green (listening)"
