"""The display service: show/set_pending_sync drive the render loop; wiring registers it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from agent.config import DisplayConfig, parse_config
from agent.context import AgentContext
from agent.wiring.health import DriverHealth
from base.health import HealthBoard, Level
from drivers.display.base import DriverError
from drivers.display.fake import MemoryDriver
from drivers.display.fonts import FontNotFoundError, FontSet
from drivers.display.layout import AMBER, OK_GREEN
from drivers.display.png import PngDriver
from drivers.display.screens import IdleScreen, PaidScreen, PayScreen, ScreenError, WaitingScreen
from drivers.display.service import DisplayService, friend_url, open_display, seconds_to_next_tick
from tests.display_samples import BINDING_URL, NOW, PAY_URL


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def running() -> AsyncIterator[tuple[DisplayService, MemoryDriver, HealthBoard]]:
    driver = MemoryDriver((480, 320))
    health = HealthBoard()
    service = DisplayService(
        config=DisplayConfig(size="480x320"),
        health=DriverHealth(health),
        initial=IdleScreen("Store"),
        driver_factory=lambda: driver,
        wall_clock=Clock(NOW),
    )
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(driver.wait_frames(1), 10)
        yield service, driver, health
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not driver.opened  # closed on cancel


async def test_initial_screen_then_each_change_is_drawn(
    running: tuple[DisplayService, MemoryDriver, HealthBoard],
) -> None:
    service, driver, health = running
    item = health.get("display")
    assert item is not None and item.level is Level.GREEN and item.detail == "memory 480x320"
    await service.show(WaitingScreen(180))
    second = await asyncio.wait_for(driver.wait_frames(2), 10)
    assert second.size == (480, 320)
    assert service.screen == WaitingScreen(180)
    assert second.tobytes() != driver.frames[0].tobytes()


async def test_pending_sync_shows_the_banner_and_clears(
    running: tuple[DisplayService, MemoryDriver, HealthBoard],
) -> None:
    service, driver, _ = running
    service.set_pending_sync(7)
    service.set_pending_sync(7)  # no change, no redraw
    with_banner = await asyncio.wait_for(driver.wait_frames(2), 10)
    assert with_banner.getpixel((240, 2)) == AMBER
    service.set_pending_sync(0)
    cleared = await asyncio.wait_for(driver.wait_frames(3), 10)
    assert cleared.getpixel((240, 2)) != AMBER
    assert service.pending_sync == 0


async def test_a_burst_of_changes_draws_the_newest(
    running: tuple[DisplayService, MemoryDriver, HealthBoard],
) -> None:
    service, driver, _ = running
    for amount in range(1, 30):
        await service.show(WaitingScreen(amount))
    await service.show(PaidScreen(180, BINDING_URL))
    async with asyncio.timeout(10):
        while (await driver.wait_frames(len(driver.frames) + 1)).getpixel((240, 1)) != OK_GREEN:
            pass
    assert len(driver.frames) < 30  # stale states were skipped, not queued


async def test_show_refuses_what_is_not_a_screen(
    running: tuple[DisplayService, MemoryDriver, HealthBoard],
) -> None:
    service, _, _ = running
    with pytest.raises(ScreenError):
        await service.show("pay")  # type: ignore[arg-type]


async def test_missing_font_marks_red_and_raises() -> None:
    health = HealthBoard()

    def no_fonts(path: Path | None) -> FontSet:
        raise FontNotFoundError("no CJK font found; install fonts-noto-cjk")

    service = DisplayService(
        config=DisplayConfig(),
        health=DriverHealth(health),
        initial=IdleScreen("Store"),
        driver_factory=lambda: MemoryDriver(),
        fonts_loader=no_fonts,
    )
    with pytest.raises(FontNotFoundError):
        await service.run()
    item = health.get("display")
    assert item is not None and item.level is Level.RED and "fonts-noto-cjk" in item.detail


def _mirrored(tmp_path: Path) -> tuple[MemoryDriver, DisplayService]:
    """A 480x320 memory driver with the PNG support copy at tmp_path/screen.png."""
    driver = MemoryDriver((480, 320))
    service = DisplayService(
        config=DisplayConfig(size="480x320"),
        health=DriverHealth(HealthBoard()),
        initial=IdleScreen("Store"),
        driver_factory=lambda: driver,
        mirror_path=tmp_path / "screen.png",
        wall_clock=Clock(NOW),
    )
    return driver, service


async def test_png_mirror_gets_the_same_frame(tmp_path: Path) -> None:
    driver, service = _mirrored(tmp_path)
    task = asyncio.create_task(service.run())
    try:
        frame = await asyncio.wait_for(driver.wait_frames(1), 10)
        async with asyncio.timeout(10):
            while service.frames_presented < 1:  # noqa: ASYNC110  # the mirror is written beside the driver
                await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    with Image.open(tmp_path / "screen.png") as png:
        assert png.convert("RGB").tobytes() == frame.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["screen.png"]  # noqa: ASYNC240  # no temp files left


@pytest.mark.parametrize(
    ("left", "expected"),
    [(299.25, 0.255), (10.0, 1.005), (0.5, 0.505), (0.0, None), (-4.0, None)],
)
def test_next_tick_is_when_the_countdown_text_changes(left: float, expected: float | None) -> None:
    tick = seconds_to_next_tick(PayScreen(180, PAY_URL, None, NOW + left), NOW)
    assert tick == (None if expected is None else pytest.approx(expected))
    assert seconds_to_next_tick(WaitingScreen(180), NOW) is None


def test_friend_url() -> None:
    assert friend_url("shopedge") == "https://line.me/R/ti/p/@shopedge"
    assert friend_url("") is None


def test_open_display_picks_the_driver(tmp_path: Path) -> None:
    png = open_display(DisplayConfig(driver="png", size="480x320"), state_dir=tmp_path)
    assert isinstance(png, PngDriver) and png.path == tmp_path / "screen.png" and png.size == (480, 320)
    web = open_display(DisplayConfig(driver="web", listen="127.0.0.1:9999"), state_dir=tmp_path)
    assert web.name == "web" and web.size == (800, 480)
    fb = open_display(DisplayConfig(driver="framebuffer", framebuffer="fb1"), state_dir=tmp_path)
    assert fb.name == "framebuffer"
    window = open_display(DisplayConfig(driver="window", fullscreen=False), state_dir=tmp_path)
    assert window.name == "window" and window.size == (800, 480)


def test_wiring_registers_the_display_service(tmp_path: Path) -> None:
    from agent.wiring import LateComponent, build_components

    config = parse_config(
        {
            "device": {"store_id": "s1", "device_id": "d1", "name": "示範門市"},
            "storage": {"state_dir": str(tmp_path)},
            "line": {"oa_basic_id": "@shopedge"},
        },
        environ={},
    )
    ctx = AgentContext(config=config, db=None)  # type: ignore[arg-type]
    components = build_components(ctx)
    late = next(c for c in components if c.name == "display")
    assert isinstance(late, LateComponent) and "display" not in ctx.services  # built once POS serves
    late.stage.build()
    service = ctx.services["display"]
    assert late.built is service and isinstance(service, DisplayService)
    assert service.screen == IdleScreen("示範門市", "https://line.me/R/ti/p/@shopedge")


async def test_a_change_arriving_with_the_cancel_does_not_keep_it_running(
    running: tuple[DisplayService, MemoryDriver, HealthBoard],
) -> None:
    """Shutdown must not hang: on Python 3.11, asyncio.wait_for drops a cancel that lands in the
    same loop step as the event it waits for (the service uses asyncio.timeout instead)."""
    service, driver, _ = running
    await service.show(PayScreen(180, PAY_URL, None, NOW + 300))  # a countdown: the wait has a timeout
    await asyncio.wait_for(driver.wait_frames(2), 10)
    task = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "DisplayService.run")  # type: ignore[union-attr]
    for _ in range(5):  # let the loop finish the first frame and wait for the next change
        await asyncio.sleep(0)
    service.set_pending_sync(3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 5)


async def test_status_reporter_stops_when_cancelled_as_health_changes() -> None:
    from agent.wiring import StatusReporter

    health = HealthBoard()
    ctx = AgentContext(config=None, db=None, health=health)  # type: ignore[arg-type]
    reporter = StatusReporter(ctx, interval=3600)
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    health.set("other", Level.AMBER, "changing as the agent stops")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 5)


async def test_a_wake_without_a_change_draws_nothing(
    running: tuple[DisplayService, MemoryDriver, HealthBoard],
) -> None:
    service, driver, _ = running
    await service.show(WaitingScreen(180))
    await asyncio.wait_for(driver.wait_frames(2), 10)
    drawn = service.frames_presented
    for _ in range(5):
        await service.show(WaitingScreen(180))  # the till repeats its state
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert service.frames_presented == drawn
    await service.show(PaidScreen(180, BINDING_URL))
    await asyncio.wait_for(driver.wait_frames(drawn + 1), 10)


async def test_the_support_copy_follows_a_burst_once_a_second_with_its_newest_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import drivers.display.png as png_module

    writes: list[Path] = []
    real_write = png_module.write_png_atomic

    def counting(image: Image.Image, path: Path) -> None:
        writes.append(path)
        real_write(image, path)

    monkeypatch.setattr(png_module, "write_png_atomic", counting)
    driver, service = _mirrored(tmp_path)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(driver.wait_frames(1), 10)
        for amount in range(100, 110):  # ten states inside one second
            await service.show(WaitingScreen(amount))
            await asyncio.sleep(0.06)
        await service.show(PaidScreen(999, BINDING_URL))
        await asyncio.sleep(2.2)  # the last frame is drawn within 50 ms, its support copy within 1 s
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert service.frames_presented >= 5  # the shopper's screen followed the burst
    assert len(writes) <= 3  # the support copy did not
    with Image.open(tmp_path / "screen.png") as png:
        assert png.convert("RGB").tobytes() == driver.frames[-1].tobytes()
    assert service.screen == PaidScreen(999, BINDING_URL)


async def test_a_support_copy_that_cannot_be_written_never_stops_the_shoppers_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the first frame (or any frame the copy is due with): logged, screen goes on."""
    import errno

    import drivers.display.png as png_module

    def full_disk(image: Image.Image, path: Path) -> None:
        raise DriverError(f"cannot write {path} ({os.strerror(errno.ENOSPC)})")

    monkeypatch.setattr(png_module, "write_png_atomic", full_disk)
    second_failure, failures = asyncio.Event(), list[str]()

    class Failures(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            failures.append(record.getMessage())
            if failures.count("support copy not written") >= 2:
                second_failure.set()

    handler = Failures()
    logging.getLogger("drivers.display.service").addHandler(handler)
    driver, board = MemoryDriver((480, 320)), HealthBoard()
    service = DisplayService(
        config=DisplayConfig(size="480x320"),
        health=DriverHealth(board),
        initial=IdleScreen("Store"),
        driver_factory=lambda: driver,
        mirror_path=tmp_path / "screen.png",
        wall_clock=Clock(NOW),
    )
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(driver.wait_frames(1), 10)
        await asyncio.sleep(1.1)  # the copy is due again with the next frame
        await service.show(PaidScreen(120, BINDING_URL))
        await asyncio.wait_for(driver.wait_frames(2), 10)
        # The copy is written beside the frame, on a thread: it may finish after the screen did.
        await asyncio.wait_for(second_failure.wait(), 10)
        assert not task.done()  # the display did not crash with its support copy
        assert {item.name: item.level for item in board.snapshot()}["display"] is Level.GREEN
    finally:
        logging.getLogger("drivers.display.service").removeHandler(handler)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
