"""The display service: the running customer display other capabilities talk to.

Owns the current screen and the offline count, and the one loop that renders and presents
them. Other capabilities call `await ctx.services["display"].show(screen)` (returns at once;
the loop draws the newest state, so a burst of changes never queues stale frames) and
`set_pending_sync(count)` for the offline banner. The loop redraws on every change and, on the
pay screen, on each second of the countdown; a wake-up that changes nothing on screen draws
nothing. Rendering runs in a thread so the POS API never waits on Pillow. The PNG support copy
(`mirror_path`) follows at most once a second (the newest frame, never a stale one): it is for a
technician, and encoding and fsyncing it for every frame cost more CPU than drawing.

`open_display(config)` picks the driver; hardware libraries are imported only in their branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from drivers._status import Condition, StatusSink
from drivers.display.base import DisplayDriver
from drivers.display.fonts import FontSet, find_fonts
from drivers.display.layout import render
from drivers.display.png import PngDriver
from drivers.display.screens import (
    SCREEN_NAMES,
    DisplayError,
    PayScreen,
    Screen,
    ScreenError,
    screen_name,
)

if TYPE_CHECKING:
    from PIL import Image

    from drivers.display.config import DisplayConfig

__all__ = ["DisplayService", "friend_url", "open_display"]

log = logging.getLogger(__name__)

# A lone change is drawn at once; a burst (a sync backlog counting down, a till sending states
# back to back) is drawn at most 20 times a second, which no eye misses and a Pi barely notices.
MIN_FRAME_INTERVAL_S: Final = 0.05
# The support copy's pace: a technician looking at screen.png sees the screen within a second.
MIRROR_INTERVAL_S: Final = 1.0


def open_display(config: DisplayConfig, *, state_dir: Path) -> DisplayDriver:
    """The driver `display.driver` names (not yet opened: use it with `async with`)."""
    if config.driver == "png":
        return PngDriver(config.png_path or state_dir / "screen.png", config.dimensions)
    if config.driver == "web":
        from drivers._config import split_listen
        from drivers.display.web import WebDriver

        host, port = split_listen(config.listen)
        return WebDriver(host, port, config.dimensions)
    if config.driver == "framebuffer":
        from drivers.display.framebuffer import FramebufferDriver

        return FramebufferDriver.for_name(config.framebuffer)
    if config.driver == "window":
        from drivers.display.window import WindowDriver

        return WindowDriver(config.dimensions, fullscreen=config.fullscreen)
    raise DisplayError(f"display.driver: unknown driver {config.driver!r}")


def friend_url(oa_basic_id: str) -> str | None:
    """LINE's add-friend link for the Official Account, shown on the idle screen."""
    return f"https://line.me/R/ti/p/@{oa_basic_id}" if oa_basic_id else None


def seconds_to_next_tick(screen: Screen, now: float) -> float | None:
    """When the countdown text next changes (None: nothing on screen changes by itself)."""
    if not isinstance(screen, PayScreen):
        return None
    left = screen.expires_at - now
    if left <= 0:
        return None
    return (left - math.floor(left) or 1.0) + 0.005


class DisplayService:
    """The `display` component and service (`ctx.services["display"]`); built by
    `agent.wiring.display`, which reports its condition on the agent's health board."""

    name = "display"

    def __init__(
        self,
        *,
        config: DisplayConfig,
        health: StatusSink,
        initial: Screen,
        driver_factory: Callable[[], DisplayDriver],
        mirror_path: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        fonts_loader: Callable[[Path | None], FontSet] = find_fonts,
    ) -> None:
        self.config = config
        self.health = health
        self._screen: Screen = initial
        self._pending = 0
        self._driver_factory = driver_factory
        self._mirror_path = mirror_path
        self._wall_clock = wall_clock
        self._fonts_loader = fonts_loader
        self._changed = asyncio.Event()
        self.frames_presented = 0
        self._mirror_due = 0.0  # monotonic time the support copy may be written again
        self._mirror_newest: Image.Image | None = None
        self._mirror_task: asyncio.Task[None] | None = None

    @property
    def screen(self) -> Screen:
        """The screen the display shows (or is about to)."""
        return self._screen

    @property
    def pending_sync(self) -> int:
        return self._pending

    async def show(self, screen: Screen) -> None:
        """Show `screen` from now on; returns at once (the loop draws it within a frame time).

        Raises:
            ScreenError: `screen` is not one of the screen states.
        """
        if type(screen) not in SCREEN_NAMES:
            raise ScreenError(f"not a screen state: {screen!r}")
        if screen != self._screen:  # debug: the payment's own "payment state" line tells the same at info
            log.debug("display screen", extra={"screen": screen_name(screen)})
        self._screen = screen
        self._changed.set()

    def set_language(self, language: str) -> None:
        """Draw in `language` from the next frame on (a live `display.language` change)."""
        if language != self.config.language:
            self.config = self.config.model_copy(update={"language": language})
            self._changed.set()

    def set_pending_sync(self, count: int) -> None:
        """Records waiting to sync; above zero the offline banner shows the number."""
        count = max(0, int(count))
        if count != self._pending:
            self._pending = count
            self._changed.set()

    async def run(self) -> None:
        try:
            fonts = await asyncio.to_thread(self._fonts_loader, self.config.font_path)
        except DisplayError as exc:
            self.health.set(self.name, Condition.DOWN, str(exc))
            raise
        driver = self._driver_factory()
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(driver)
            mirror = None
            if self._mirror_path is not None:
                mirror = await stack.enter_async_context(PngDriver(self._mirror_path, driver.size))
            width, height = driver.size
            self.health.set(self.name, Condition.OK, f"{driver.name} {width}x{height}")
            stack.callback(self._stop_mirror)
            drawn: tuple[Screen, int] | None = None
            while True:
                self._changed.clear()
                screen, pending, now = self._screen, self._pending, self._wall_clock()
                if drawn == (screen, pending) and not isinstance(screen, PayScreen):
                    await self._changed.wait()  # woken without a change: the frame shown is right
                    continue
                try:
                    frame = await asyncio.to_thread(
                        render,
                        screen,
                        size=driver.size,
                        lang=self.config.language,
                        fonts=fonts,
                        now=now,
                        pending_sync=pending,
                    )
                except DisplayError as exc:
                    log.error(
                        "screen cannot be drawn", extra={"screen": screen_name(screen), "error": str(exc)}
                    )
                    detail = f"cannot draw {screen_name(screen)}: {exc}"
                    self.health.set(self.name, Condition.DEGRADED, detail)
                else:
                    await self._present(driver, mirror, frame.image)
                    drawn = (screen, pending)
                    self.frames_presented += 1
                    self.health.set(self.name, Condition.OK, f"{driver.name} {width}x{height}")
                if self._changed.is_set():  # changes arrived while drawing: cap the frame rate
                    await asyncio.sleep(MIN_FRAME_INTERVAL_S)
                    continue
                timeout = seconds_to_next_tick(screen, now)
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for (3.11) can eat a cancel
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()

    async def _present(self, driver: DisplayDriver, mirror: PngDriver | None, image: Image.Image) -> None:
        """The shopper's screen at once; the support copy now if its second is up (side by side,
        so it never delays the screen), else the newest frame when it is."""
        if mirror is None:
            await driver.present(image)
            return
        idle = self._mirror_task is None or self._mirror_task.done()
        if idle and time.monotonic() >= self._mirror_due:
            self._mirror_due = time.monotonic() + MIRROR_INTERVAL_S
            await asyncio.gather(driver.present(image), self._write_mirror(driver, mirror, image))
            return
        self._mirror_newest = image
        await driver.present(image)
        if idle:
            later = self._mirror_later(driver, mirror)
            self._mirror_task = asyncio.create_task(later, name="shopedge.display.mirror")

    async def _mirror_later(self, driver: DisplayDriver, mirror: PngDriver) -> None:
        await asyncio.sleep(max(0.0, self._mirror_due - time.monotonic()))
        image, self._mirror_newest = self._mirror_newest, None
        if image is None:
            return
        self._mirror_due = time.monotonic() + MIRROR_INTERVAL_S
        await self._write_mirror(driver, mirror, image)

    async def _write_mirror(self, driver: DisplayDriver, mirror: PngDriver, image: Image.Image) -> None:
        """The support copy; a failure (a full disk) is logged, never the shopper's problem.

        A driver that encodes its frames as PNG anyway (the web driver, for the kiosk) lends
        its encoding: the copy then costs a file write, not a second encode beside the frame.
        """
        encoded: Callable[[Image.Image], Awaitable[bytes]] | None = getattr(driver, "encoded", None)
        try:
            await mirror.present(await encoded(image) if encoded is not None else image)
        except DisplayError as exc:  # the shopper's screen is fine; only the support copy is stale
            log.error("support copy not written", extra={"path": str(mirror.path), "error": str(exc)})

    def _stop_mirror(self) -> None:
        if self._mirror_task is not None:
            self._mirror_task.cancel()
            self._mirror_task = None
