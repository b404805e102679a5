"""The real keyboard-wedge scanner on Linux, through evdev (optional extra `scanner`).

The device is grabbed exclusively, so scanned digits never reach a console or the kiosk
browser; key presses go through the pure `WedgeDecoder`. `evdev` is imported here only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

from drivers.scanner.base import WedgeDecoder

__all__ = ["EvdevScanner"]


class EvdevScanner:
    def __init__(self, device_path: str) -> None:
        self._path = device_path
        self._device: Any = None

    async def __aenter__(self) -> Self:
        import evdev  # optional extra: pip install shopedge[scanner]

        self._device = evdev.InputDevice(self._path)
        self._device.grab()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._device is not None:
            with contextlib.suppress(OSError):  # already released if the device was unplugged
                self._device.ungrab()
            self._device.close()
            self._device = None

    async def codes(self) -> AsyncIterator[str]:
        import evdev

        decoder = WedgeDecoder()
        async for event in self._device.async_read_loop():
            if event.type != evdev.ecodes.EV_KEY or event.value != 1:  # key down only
                continue
            name = evdev.ecodes.KEY.get(event.code)
            if isinstance(name, list):
                name = name[0]
            code = decoder.feed(str(name))
            if code is not None:
                yield code
