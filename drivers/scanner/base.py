"""The barcode-scanner interface and the pure keyboard-wedge decoder.

A USB/Bluetooth barcode scanner is a keyboard: it "types" the code and presses Enter.
`WedgeDecoder` turns key presses into codes and keeps only LINE Pay Taiwan one-time keys
(18 digits); everything else a cashier might scan (a product barcode) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self

__all__ = ["ONE_TIME_KEY", "Scanner", "WedgeDecoder"]

ONE_TIME_KEY = re.compile(r"^[0-9]{18}\Z")
_DIGITS = {f"KEY_{d}": str(d) for d in range(10)} | {f"KEY_KP{d}": str(d) for d in range(10)}
_ENTER = {"KEY_ENTER", "KEY_KPENTER"}
_SHIFT = {"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"}
MAX_CODE = 64  # longer input without Enter is noise (a stuck key), not a barcode


class Scanner(Protocol):
    """A source of scanned one-time keys (an async context manager)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def codes(self) -> AsyncIterator[str]:
        """Each one-time key as it is scanned, until the scanner closes."""
        ...


class WedgeDecoder:
    """Key-down names in, complete codes out (pure; one per scanner)."""

    def __init__(self) -> None:
        self._buffer: list[str] = []

    def feed(self, key_name: str) -> str | None:
        """Feed one key press (e.g. "KEY_7", "KEY_ENTER"); returns a one-time key when one completes."""
        if key_name in _ENTER:
            code, self._buffer = "".join(self._buffer), []
            return code if ONE_TIME_KEY.match(code) else None
        digit = _DIGITS.get(key_name)
        if digit is None:
            if key_name not in _SHIFT:
                self._buffer = []  # a letter or control key: not a one-time key
            return None
        self._buffer.append(digit)
        if len(self._buffer) > MAX_CODE:
            self._buffer = []
        return None
