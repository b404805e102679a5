"""The window driver: an HDMI window through pygame/SDL (optional extra `shopedge[window]`).

Owns the SDL window. Every pygame call runs on one dedicated thread, because SDL wants its
video calls from the thread that initialised it and the asyncio loop must not block on a flip.
Fullscreen without a frame is what a counter screen wants; windowed is for a technician's
desktop. pygame is imported only when this driver is chosen (`open_display`), so the agent runs
without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from PIL import Image

from drivers.display.base import DriverError

__all__ = ["WindowDriver"]

T = TypeVar("T")


class WindowDriver:
    """Shows frames in an SDL window (fullscreen on the counter)."""

    name = "window"

    def __init__(self, size: tuple[int, int], *, fullscreen: bool = True, title: str = "ShopEdge") -> None:
        self._size = size
        self.fullscreen = fullscreen
        self.title = title
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pygame: Any = None
        self._surface: Any = None

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    async def _call(self, func: Callable[[], T]) -> T:
        if self._executor is None:
            raise DriverError("window driver used before it was opened")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    async def __aenter__(self) -> Self:
        try:
            import pygame
        except ImportError:
            raise DriverError(
                "display.driver = 'window' needs pygame: pip install 'shopedge[window]' (or use 'web')"
            ) from None
        self._pygame = pygame
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="shopedge-sdl"
        )
        try:
            await self._call(self._open_blocking)
        except DriverError:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        return self

    def _open_blocking(self) -> None:
        pygame = self._pygame
        try:
            pygame.display.init()
            flags = pygame.FULLSCREEN | pygame.NOFRAME if self.fullscreen else 0
            self._surface = pygame.display.set_mode(self._size, flags)
        except pygame.error as exc:
            raise DriverError(f"display.driver = 'window': SDL cannot open a window ({exc})") from None
        pygame.display.set_caption(self.title)
        pygame.mouse.set_visible(False)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._executor is None:
            return
        try:
            await self._call(self._pygame.display.quit)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None
            self._surface = None

    async def present(self, image: Image.Image) -> None:
        data = image.convert("RGB").tobytes() if image.mode != "RGB" else image.tobytes()
        await self._call(lambda: self._present_blocking(data, image.size))

    def _present_blocking(self, data: bytes, size: tuple[int, int]) -> None:
        if size != self._size:
            raise DriverError(f"frame is {size}, window is {self._size}")
        pygame = self._pygame
        self._surface.blit(pygame.image.frombuffer(data, size, "RGB"), (0, 0))
        pygame.display.flip()
        pygame.event.pump()  # keep the window manager from marking the window unresponsive

    async def snapshot(self) -> Image.Image:
        """What the window shows now (read back from SDL's surface; used by tests and support)."""

        def grab() -> Image.Image:
            data = self._pygame.image.tobytes(self._surface, "RGB")
            return Image.frombytes("RGB", self._size, data)

        return await self._call(grab)
