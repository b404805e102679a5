"""The driver interface: something that shows a finished RGB image, at a fixed size.

Owns the contract between the display service and the four drivers (png, web, framebuffer,
window). Layout never talks to hardware and drivers never lay out: the service renders at the
driver's `size` and hands over pixels.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from PIL import Image

from drivers.display.screens import DisplayError

__all__ = ["DisplayDriver", "DriverError"]


class DriverError(DisplayError):
    """The driver could not put pixels where it should (device missing, port busy, disk full)."""


class DisplayDriver(Protocol):
    """A place to show frames; an async context manager that owns its device or server."""

    name: str

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels the frames must have."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def present(self, image: Image.Image) -> None:
        """Show `image` (RGB, exactly `size`); returns once it is out (written, flipped, published)."""
