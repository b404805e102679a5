"""The outbox's data types and errors: what callers put in, what consumers get out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "DeadLetter",
    "Durability",
    "OutboxClosedError",
    "OutboxError",
    "OutboxWriteError",
    "Record",
    "StreamStats",
    "TelemetryRefusedError",
]


class Durability(StrEnum):
    """How hard the outbox tries to keep a record.

    CRITICAL records (payments, sales, conversions, coupon pushes) are committed with
    `synchronous=FULL`, never expire and are never shed. TELEMETRY records (presence, health)
    may expire and are shed first when the disk budget is reached.
    """

    CRITICAL = "critical"
    TELEMETRY = "telemetry"


@dataclass(frozen=True, kw_only=True)
class Record:
    """One claimed record. `attempts` counts claims, this one included; `created_at` is wall clock."""

    id: int
    stream: str
    payload: dict[str, Any]
    dedupe_key: str | None
    durability: Durability
    attempts: int
    created_at: float


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A record that gave up: too many attempts, or a permanent error. `retry` puts it back."""

    id: int
    stream: str
    payload: dict[str, Any]
    dedupe_key: str | None
    durability: Durability
    attempts: int
    created_at: float
    failed_at: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class StreamStats:
    """Counts of one stream: `depth` waiting records (in-flight included), `oldest_at` wall clock."""

    stream: str
    depth: int
    in_flight: int
    waiting_retry: int
    oldest_at: float | None
    dead: int
    nbytes: int


class OutboxError(Exception):
    """Root of the outbox's errors."""


class OutboxClosedError(OutboxError):
    """The outbox was used after `close()` (or its writer thread died)."""


class OutboxWriteError(OutboxError):
    """SQLite could not write (disk full, I/O error, locked too long): the record is NOT stored."""


class TelemetryRefusedError(OutboxError):
    """A telemetry record was refused because the disk budget is reached (critical ones never are)."""
