"""The framebuffer driver: writes frames straight into /dev/fbN, in the format the kernel reports.

Owns reading the framebuffer's geometry from sysfs (/sys/class/graphics/fbN: `modes` or
`virtual_size`, `bits_per_pixel`, `stride`) and packing RGB frames into it:
- 16 bpp: RGB565, little-endian (what the Pi's DPI/SPI panels and fbtft drivers expose);
- 24 bpp: BGR888; 32 bpp: XRGB8888 little-endian, i.e. bytes B, G, R, X (the Pi's HDMI fb).
Rows are written `stride` bytes apart, leaving any padding bytes alone. No X11, no SDL: this
is the lightest way to drive a small panel on a 512 MB Pi.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from PIL import Image, ImageChops

from drivers.display.base import DriverError

__all__ = ["FbGeometry", "FramebufferDriver", "pack", "parse_geometry", "read_geometry"]

_BYTES_PER_PIXEL: Final = {16: 2, 24: 3, 32: 4}
# RGB565 split into its two little-endian bytes, one lookup table per channel contribution:
# low byte = GGGBBBBB (green bits 2-4, blue bits 3-7), high byte = RRRRRGGG (red 3-7, green 5-7).
_R_HI: Final = [(v >> 3) << 3 for v in range(256)]
_G_HI: Final = [v >> 5 for v in range(256)]
_G_LO: Final = [((v >> 2) & 0x07) << 5 for v in range(256)]
_B_LO: Final = [v >> 3 for v in range(256)]


@dataclass(frozen=True, kw_only=True)
class FbGeometry:
    """What the kernel says about one framebuffer."""

    width: int
    height: int
    bits_per_pixel: int
    stride: int  # bytes from one row to the next

    @property
    def row_bytes(self) -> int:
        return self.width * _BYTES_PER_PIXEL[self.bits_per_pixel]


def parse_geometry(
    *,
    virtual_size: str,
    bits_per_pixel: str,
    stride: str | None = None,
    modes: str | None = None,
    source: str = "fb",
) -> FbGeometry:
    """Geometry from the sysfs attribute texts; the visible mode wins over the (panned) virtual size.

    Raises:
        DriverError: an attribute is malformed or the pixel format is not supported.
    """
    mode = re.search(r"(\d+)x(\d+)", modes.splitlines()[0]) if modes and modes.strip() else None
    size = mode or re.fullmatch(r"\s*(\d+),(\d+)\s*", virtual_size)
    if size is None:
        raise DriverError(f"{source}/virtual_size: expected 'WIDTH,HEIGHT', got {virtual_size!r}")
    width, height = int(size[1]), int(size[2])
    try:
        bpp = int(bits_per_pixel)
    except ValueError:
        raise DriverError(f"{source}/bits_per_pixel: expected a number, got {bits_per_pixel!r}") from None
    if bpp not in _BYTES_PER_PIXEL:
        raise DriverError(
            f"{source}/bits_per_pixel: {bpp} bpp is not supported (16 RGB565, 24 BGR888, 32 XRGB8888)"
        )
    row = width * _BYTES_PER_PIXEL[bpp]
    try:
        pitch = int(stride) if stride and stride.strip() else row
    except ValueError:
        raise DriverError(f"{source}/stride: expected a number, got {stride!r}") from None
    if width < 1 or height < 1 or pitch < row:
        raise DriverError(f"{source}: impossible geometry {width}x{height} at {bpp} bpp with stride {pitch}")
    return FbGeometry(width=width, height=height, bits_per_pixel=bpp, stride=pitch)


def read_geometry(sysfs_dir: Path) -> FbGeometry:
    """Read a framebuffer's geometry from its sysfs directory.

    Raises:
        DriverError: the framebuffer does not exist or reports something unusable.
    """
    if not sysfs_dir.is_dir():
        raise DriverError(
            f"display.framebuffer: {sysfs_dir} does not exist "
            "(no such framebuffer: is the panel's overlay loaded?)"
        )

    def attr(name: str) -> str | None:
        try:
            return (sysfs_dir / name).read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise DriverError(f"{sysfs_dir / name}: unreadable ({exc})") from None

    virtual_size, bpp = attr("virtual_size"), attr("bits_per_pixel")
    if virtual_size is None or bpp is None:
        raise DriverError(f"{sysfs_dir}: missing virtual_size or bits_per_pixel")
    return parse_geometry(
        virtual_size=virtual_size,
        bits_per_pixel=bpp,
        stride=attr("stride"),
        modes=attr("modes"),
        source=str(sysfs_dir),
    )


def pack(image: Image.Image, geometry: FbGeometry) -> bytes:
    """The frame as the framebuffer's bytes, `stride` apart (padding zero-filled in this buffer).

    Raises:
        DriverError: the image does not have the framebuffer's size.
    """
    if image.size != (geometry.width, geometry.height):
        raise DriverError(f"frame is {image.size}, framebuffer is {geometry.width}x{geometry.height}")
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    if geometry.bits_per_pixel == 32:
        data = rgb.tobytes("raw", "BGRX")
    elif geometry.bits_per_pixel == 24:
        data = rgb.tobytes("raw", "BGR")
    else:
        red, green, blue = rgb.split()
        low = ImageChops.add(green.point(_G_LO), blue.point(_B_LO))  # disjoint bits: add never clips
        high = ImageChops.add(red.point(_R_HI), green.point(_G_HI))
        data = Image.merge("LA", (low, high)).tobytes()  # interleaved low, high = little-endian
    if geometry.stride == geometry.row_bytes:
        return data
    row, pad = geometry.row_bytes, bytes(geometry.stride - geometry.row_bytes)
    return b"".join(data[i : i + row] + pad for i in range(0, len(data), row))


class FramebufferDriver:
    """Shows frames on a Linux framebuffer device (or a file laid out like one)."""

    name = "framebuffer"

    def __init__(self, device: Path, sysfs_dir: Path) -> None:
        self.device = device
        self.sysfs_dir = sysfs_dir
        self._geometry: FbGeometry | None = None
        self._fd: int | None = None

    @classmethod
    def for_name(cls, name: str) -> FramebufferDriver:
        """The driver for `display.framebuffer` (e.g. "fb0" -> /dev/fb0, /sys/class/graphics/fb0)."""
        return cls(Path("/dev") / name, Path("/sys/class/graphics") / name)

    @property
    def geometry(self) -> FbGeometry:
        if self._geometry is None:
            raise DriverError("framebuffer driver used before it was opened")
        return self._geometry

    @property
    def size(self) -> tuple[int, int]:
        return self.geometry.width, self.geometry.height

    async def __aenter__(self) -> Self:
        self._geometry = read_geometry(self.sysfs_dir)
        try:
            self._fd = os.open(self.device, os.O_WRONLY)
        except OSError as exc:
            raise DriverError(
                f"display.framebuffer: cannot open {self.device} "
                f"({exc.strerror}; is the user in group 'video'?)"
            ) from None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def present(self, image: Image.Image) -> None:
        await asyncio.to_thread(self._present_blocking, image)

    def _present_blocking(self, image: Image.Image) -> None:
        if self._fd is None:
            raise DriverError("framebuffer driver used before it was opened")
        geometry = self.geometry
        data = pack(image, geometry)
        if geometry.stride != geometry.row_bytes:
            # Write row by row so the padding bytes between rows keep whatever the driver put there.
            view = memoryview(data)
            for y in range(geometry.height):
                start = y * geometry.stride
                self._write_at(view[start : start + geometry.row_bytes], start)
        else:
            self._write_at(data, 0)

    def _write_at(self, data: bytes | memoryview, offset: int) -> None:
        assert self._fd is not None
        try:
            written = os.pwrite(self._fd, data, offset)
        except OSError as exc:
            raise DriverError(f"{self.device}: write failed ({exc.strerror})") from None
        if written != len(data):
            raise DriverError(f"{self.device}: short write ({written} of {len(data)} bytes)")
