"""The durable SQLite outbox: everything that must not be lost goes through it first.

Public API (the shared contract): `Outbox`, `Durability`, `Record`, plus the errors and the
inspection types. See `offline_queue._outbox` for delivery semantics and `offline_queue._policy`
for the per-stream ordering rule.
"""

from offline_queue._model import (
    DeadLetter,
    Durability,
    OutboxClosedError,
    OutboxError,
    OutboxWriteError,
    Record,
    StreamStats,
    TelemetryRefusedError,
)
from offline_queue._outbox import HealthCallback, InvalidRecordError, Outbox, OutboxCondition, PrepareDatabase

__all__ = [
    "DeadLetter",
    "Durability",
    "HealthCallback",
    "InvalidRecordError",
    "Outbox",
    "OutboxClosedError",
    "OutboxCondition",
    "OutboxError",
    "OutboxWriteError",
    "PrepareDatabase",
    "Record",
    "StreamStats",
    "TelemetryRefusedError",
]
