"""Replay of a JSONL advert capture through the same callback path as the live scanner.

Owns the capture format and its playback. One JSON object per line:

    {"ts": 1763856000.25, "address": "C2:00:00:00:00:01", "rssi": -61,
     "manufacturer_data": {"0x004c": "0215..."}, "service_data": {"0000fe6f-...": "02..."}}

`ts` is epoch seconds (only differences matter), manufacturer data is keyed by company id
(`0x004c` or decimal) and both dicts hold hex. Lines starting with `#` and blank lines are
skipped. `shopedge ble record` writes this format (with pseudonymised addresses); the demo
plays `DEMO_CAPTURE`.

Playback runs in the capture's own time base, scaled by `speed`: `now()` is virtual seconds
since the start, so the presence engine sees the capture's timing whatever the speed. A bad
line stops the replay (after the lines before it have played) with a red status naming file
and line; nothing is guessed or skipped silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from drivers._status import Condition
from drivers.ble.base import Advert, QueueSource, RealTimer, SourceStatus, Timer

__all__ = ["DEMO_CAPTURE", "CaptureLine", "ReplaySource", "parse_capture_line"]

log = logging.getLogger(__name__)

DEMO_CAPTURE = Path(__file__).with_name("demo_capture.jsonl")
_CHUNK = 1000  # lines read per trip to the worker thread


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptureLine:
    ts: float
    address: str
    rssi: int
    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]


def _hex_dict(value: object, what: str) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object of hex strings")
    out: dict[str, bytes] = {}
    for key, data in value.items():
        if not isinstance(data, str):
            raise ValueError(f"{what}[{key!r}] must be a hex string")
        try:
            out[key] = bytes.fromhex(data)
        except ValueError:
            raise ValueError(f"{what}[{key!r}] is not hex: {data[:40]!r}") from None
    return out


def parse_capture_line(text: str) -> CaptureLine | None:
    """One capture line (None for blank and comment lines).

    Raises:
        ValueError: naming the field that is wrong.
    """
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    ts, address, rssi = raw.get("ts"), raw.get("address"), raw.get("rssi")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise ValueError("ts must be a number (epoch seconds)")
    if not isinstance(address, str) or not address:
        raise ValueError("address must be a non-empty string")
    if not isinstance(rssi, int) or isinstance(rssi, bool) or not -127 <= rssi <= 20:
        raise ValueError("rssi must be an integer dBm from -127 to 20")
    manufacturer: dict[int, bytes] = {}
    for key, data in _hex_dict(raw.get("manufacturer_data"), "manufacturer_data").items():
        try:
            company = int(key, 0)
        except ValueError:
            raise ValueError(f"manufacturer_data key {key!r} is not a company id") from None
        if not 0 <= company <= 0xFFFF:
            raise ValueError(f"manufacturer_data key {key!r} is out of range")
        manufacturer[company] = data
    service = {key.lower(): data for key, data in _hex_dict(raw.get("service_data"), "service_data").items()}
    return CaptureLine(
        ts=float(ts), address=address, rssi=rssi, manufacturer_data=manufacturer, service_data=service
    )


class ReplaySource(QueueSource):
    """Plays a capture at `speed` times real time, looping if asked."""

    virtual_time = True

    def __init__(
        self, path: Path, *, speed: float = 1.0, loop: bool = False, timer: Timer | None = None
    ) -> None:
        super().__init__(timer or RealTimer())
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.path = path
        self.speed = speed
        self.loop = loop
        self.rounds = 0
        self._file: IO[str] | None = None
        self._lineno = 0
        self._pending: deque[CaptureLine] = deque()
        self._eof = False
        self._first_ts: float | None = None
        self._last_ts = 0.0
        self._offset = 0.0  # virtual seconds added per completed loop
        self._real_start = 0.0
        self._failed = False
        self._error: str | None = None
        self._status = SourceStatus(level=Condition.DEGRADED, detail=f"replay of {path.name} starting")

    @property
    def status(self) -> SourceStatus:
        return self._status

    def now(self) -> float:
        return (self.timer.now() - self._real_start) * self.speed

    async def __aenter__(self) -> Self:
        self._real_start = self.timer.now()
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None

    async def _open(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
        try:
            self._file = await asyncio.to_thread(self.path.open, "r", encoding="utf-8")
        except OSError as exc:
            self._fail(f"cannot open capture {self.path}: {exc.strerror or exc}")
            return
        self._lineno = 0
        self._eof = False
        self._status = SourceStatus(
            level=Condition.OK, detail=f"replaying {self.path.name} at {self.speed:g}x"
        )

    def _read_chunk_blocking(self) -> list[CaptureLine]:
        assert self._file is not None
        out: list[CaptureLine] = []
        while len(out) < _CHUNK:
            try:
                text = self._file.readline()
            except UnicodeDecodeError as exc:
                self._error = f"{self.path}:{self._lineno + 1}: not UTF-8 text ({exc.reason})"
                self._eof = True
                break
            if not text:
                self._eof = True
                break
            self._lineno += 1
            try:
                line = parse_capture_line(text)
            except ValueError as exc:
                # The lines before it still play; the replay stops at this one.
                self._error = f"{self.path}:{self._lineno}: {exc}"
                self._eof = True
                break
            if line is not None:
                out.append(line)
        return out

    def _fail(self, message: str) -> None:
        self._failed = True
        self._status = SourceStatus(level=Condition.DOWN, detail=message)
        log.error("BLE replay stopped", extra={"problem": message})

    async def _peek(self) -> CaptureLine | None:
        while not self._pending and not self._failed:
            if self._error is not None:
                self._fail(self._error)
                break
            if self._file is None or self._eof:
                if self._first_ts is None or not self.loop:
                    if self._status.level is Condition.OK:
                        self._status = SourceStatus(
                            level=Condition.DEGRADED, detail=f"replay of {self.path.name} finished"
                        )
                    return None
                # Next round: the virtual clock goes on, 1 s after the last line of this round.
                self._offset += self._last_ts - self._first_ts + 1.0
                self._first_ts = None
                self.rounds += 1
                await self._open()
                continue
            self._pending.extend(await asyncio.to_thread(self._read_chunk_blocking))
        return self._pending[0] if self._pending else None

    def _due(self, line: CaptureLine) -> float:
        if self._first_ts is None:
            self._first_ts = line.ts
        return self._offset + line.ts - self._first_ts

    async def next_advert(self, within: float) -> Advert | None:
        deadline = self.now() + within
        while self._queue.empty():
            line = await self._peek()
            now = self.now()
            if line is None:
                if now < deadline:
                    await self.timer.sleep((deadline - now) / self.speed)
                return None
            due = self._due(line)
            if due > now:
                if due > deadline:
                    await self.timer.sleep(max(deadline - now, 0.0) / self.speed)
                    return None
                await self.timer.sleep((due - now) / self.speed)
            self._pending.popleft()
            self._last_ts = line.ts
            self._push(line.address, line.rssi, line.manufacturer_data, line.service_data)
        return self._queue.get_nowait()
