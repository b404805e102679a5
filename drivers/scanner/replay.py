"""The replay twin of the barcode scanner: keys from a file or pushed by a test or the demo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self

from drivers.scanner.base import ONE_TIME_KEY

__all__ = ["ReplayScanner"]


class ReplayScanner:
    """Yields keys from `keys` (or a file, one per line, `#` comments), then whatever is `push`ed."""

    def __init__(self, keys: list[str] | None = None, *, interval_s: float = 0.0, maxsize: int = 16) -> None:
        self._initial = list(keys or [])
        self._interval = interval_s
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=maxsize)

    @classmethod
    def from_file(cls, path: Path, *, interval_s: float = 1.0) -> ReplayScanner:
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls(
            [line.strip() for line in lines if line.strip() and not line.startswith("#")],
            interval_s=interval_s,
        )

    def push(self, key: str) -> None:
        """Scan `key` now (raises asyncio.QueueFull if nobody reads)."""
        self._queue.put_nowait(key)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def codes(self) -> AsyncIterator[str]:
        for key in self._initial:
            if self._interval:
                await asyncio.sleep(self._interval)
            if ONE_TIME_KEY.match(key):
                yield key
        while True:
            pushed = await self._queue.get()
            if pushed is None:
                return
            if ONE_TIME_KEY.match(pushed):
                yield pushed
