"""Where presence and beacon-health events go: the outbox (as telemetry), or memory for tests.

Owns the small `TelemetrySink` interface between the BLE component and the outbox contract
(`Outbox.put(stream, payload, durability=Durability.TELEMETRY)`), so the component is tested
against `MemorySink` and runs against the real outbox unchanged.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from drivers.ble.const import TELEMETRY_TTL_S
from offline_queue import Durability

__all__ = ["MemorySink", "OutboxLike", "OutboxSink", "TelemetrySink"]


class TelemetrySink(Protocol):
    async def emit(self, stream: str, payload: dict[str, Any]) -> None: ...


class OutboxLike(Protocol):
    """The part of `offline_queue.Outbox` this capability uses."""

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Durability = ...,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int: ...


class OutboxSink:
    """Puts each event in the durable outbox as telemetry: shed first under disk pressure and
    dropped unsent after `TELEMETRY_TTL_S`, never at the expense of a payment."""

    def __init__(self, outbox: OutboxLike, wall_clock: Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self._wall_clock = wall_clock

    async def emit(self, stream: str, payload: dict[str, Any]) -> None:
        await self.outbox.put(
            stream,
            payload,
            durability=Durability.TELEMETRY,
            expires_at=self._wall_clock() + TELEMETRY_TTL_S,
        )


class MemorySink:
    """Keeps the latest events in memory (bounded); what tests inspect."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.events: deque[tuple[str, dict[str, Any]]] = deque(maxlen=maxlen)

    async def emit(self, stream: str, payload: dict[str, Any]) -> None:
        self.events.append((stream, payload))
