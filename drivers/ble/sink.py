"""Where presence and beacon-health events go: the outbox (telemetry), or memory for tests.

Owns the small `TelemetrySink` interface between the BLE component and the outbox contract
(`Outbox.put(stream, payload, durability=Durability.TELEMETRY)`), so the component can be
tested against `MemorySink` and run against the real outbox unchanged.
"""

from __future__ import annotations

import importlib
from collections import deque
from typing import Any, Protocol

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
        durability: Any = ...,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int: ...


def _telemetry() -> Any:
    """`offline_queue.Durability.TELEMETRY` (a StrEnum equal to "telemetry")."""
    durability = getattr(importlib.import_module("offline_queue"), "Durability", None)
    return "telemetry" if durability is None else durability.TELEMETRY


class OutboxSink:
    """Puts each event in the durable outbox as telemetry (sheddable under disk pressure)."""

    def __init__(self, outbox: OutboxLike) -> None:
        self.outbox = outbox
        self._durability = _telemetry()

    async def emit(self, stream: str, payload: dict[str, Any]) -> None:
        await self.outbox.put(stream, payload, durability=self._durability)


class MemorySink:
    """Keeps the latest events in memory (bounded); what tests inspect."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.events: deque[tuple[str, dict[str, Any]]] = deque(maxlen=maxlen)

    async def emit(self, stream: str, payload: dict[str, Any]) -> None:
        self.events.append((stream, payload))
