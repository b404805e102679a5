"""The in-memory driver: the fake twin of the real drivers, for tests of anything that shows screens."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from PIL import Image

from drivers.display.base import DriverError

__all__ = ["MemoryDriver"]


class MemoryDriver:
    """Keeps every presented frame; `wait_frames(n)` returns once n frames have arrived."""

    name = "memory"

    def __init__(self, size: tuple[int, int] = (800, 480)) -> None:
        self._size = size
        self.frames: list[Image.Image] = []
        self.opened = False
        self._arrived = asyncio.Condition()

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    async def __aenter__(self) -> Self:
        self.opened = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.opened = False

    async def present(self, image: Image.Image) -> None:
        if not self.opened:
            raise DriverError("memory driver used while closed")
        if image.size != self._size:
            raise DriverError(f"frame is {image.size}, display is {self._size}")
        async with self._arrived:
            self.frames.append(image)
            self._arrived.notify_all()

    async def wait_frames(self, count: int) -> Image.Image:
        """The latest frame once at least `count` frames have been presented."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.frames) >= count)
            return self.frames[-1]
