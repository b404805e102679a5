"""The png driver: writes the current screen to a file, atomically (tests, remote support).

A reader (a support tool, a test, `scp`) never sees a half-written file: the frame goes to a
temporary file in the same directory, is fsynced and renamed over the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from PIL import Image

from drivers.display.base import DriverError

__all__ = ["PngDriver", "write_png_atomic"]


def write_png_atomic(image: Image.Image, path: Path) -> None:
    """Write `image` to `path` so that `path` is always either the old or the new complete file.

    Raises:
        DriverError: the directory is missing or not writable, or the disk is full.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DriverError(f"cannot write in {path.parent} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as out:
            image.save(out, format="PNG", compress_level=1)  # level 1: 5x faster, 10 % larger
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise DriverError(f"cannot write {path} ({exc.strerror})") from None


class PngDriver:
    """Shows each frame by replacing a PNG file."""

    name = "png"

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        self.path = path
        self._size = size

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    async def __aenter__(self) -> Self:
        if not self.path.parent.is_dir():
            raise DriverError(f"display.png_path: directory {self.path.parent} does not exist")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def present(self, image: Image.Image) -> None:
        await asyncio.to_thread(write_png_atomic, image, self.path)
