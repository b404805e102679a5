"""Recording a capture on a real Pi (`shopedge ble record`), in the format `replay.py` plays.

Owns the pseudonymisation of recordings: each address is replaced by HMAC-SHA256 under a
random key made for this recording and never written anywhere, shaped as a random static
address. Distinct devices stay distinct (so footfall and presence replay faithfully) but no
recording can be linked back to a phone, or to another recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from drivers._status import Condition
from drivers.ble.base import Advert, AdvertSource

__all__ = ["RecordResult", "capture_line", "install_stop_on_sigint", "pseudonymize", "record"]

# The technician reads the scanner's state in the same words as the device's health.
_STATUS_WORDS = {Condition.OK: "green", Condition.DEGRADED: "amber", Condition.DOWN: "red"}


def pseudonymize(address: str, key: bytes) -> str:
    """A stable stand-in for `address` under `key`, formatted as a random static address."""
    digest = hmac.new(key, address.upper().encode(), hashlib.sha256).digest()[:6]
    first = digest[0] | 0xC0  # top bits 11: "random static", never a real public address
    return ":".join(f"{b:02X}" for b in [first, *digest[1:]])


def capture_line(advert: Advert, ts: float, pseudonym: str) -> str:
    """One JSONL line for `advert` heard at epoch `ts`, under its pseudonym (never its address)."""
    return json.dumps(
        {
            "ts": round(ts, 3),
            "address": pseudonym,
            "rssi": advert.rssi,
            "manufacturer_data": {f"0x{k:04x}": bytes(v).hex() for k, v in advert.manufacturer_data.items()},
            "service_data": {k: bytes(v).hex() for k, v in advert.service_data.items()},
        },
        separators=(",", ":"),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordResult:
    adverts: int
    devices: int
    last_status: str
    down: bool


def _write_blocking(out: TextIO, lines: list[str]) -> None:
    out.write("".join(f"{line}\n" for line in lines))
    out.flush()


async def record(
    source: AdvertSource,
    out: Path,
    *,
    seconds: float | None,
    wall_clock: Callable[[], float],
    say: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> RecordResult:
    """Record adverts from `source` into `out` until `seconds` pass or `stop` is set (Ctrl-C)."""
    stop = stop or asyncio.Event()
    key = secrets.token_bytes(32)
    devices: set[str] = set()
    count = 0
    last_status = ""
    handle = await asyncio.to_thread(out.open, "w", encoding="utf-8")
    try:
        await asyncio.to_thread(
            _write_blocking, handle, ["# ShopEdge BLE capture (addresses pseudonymised per recording)"]
        )
        async with source:
            start = source.now()
            buffer: list[str] = []
            next_flush = start + 1.0
            while not stop.is_set() and (seconds is None or source.now() - start < seconds):
                advert = await source.next_advert(0.5)
                if advert is not None:
                    pseudonym = pseudonymize(advert.address, key)
                    buffer.append(capture_line(advert, wall_clock(), pseudonym))
                    devices.add(pseudonym)
                    count += 1
                status = source.status
                text = f"{_STATUS_WORDS[status.level]}: {status.detail}"
                if text != last_status:
                    say(text)
                    last_status = text
                if source.now() >= next_flush and buffer:
                    await asyncio.to_thread(_write_blocking, handle, buffer)
                    buffer = []
                    next_flush = source.now() + 1.0
            if buffer:
                await asyncio.to_thread(_write_blocking, handle, buffer)
            down = source.status.level is Condition.DOWN
    finally:
        await asyncio.to_thread(handle.close)
    return RecordResult(adverts=count, devices=len(devices), last_status=last_status, down=down)


def install_stop_on_sigint(stop: asyncio.Event) -> None:
    """Ctrl-C ends the recording cleanly (the file is flushed) instead of interrupting a write."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
