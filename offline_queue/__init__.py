"""The durable SQLite outbox: everything that must not be lost goes through it first.

Public API (the shared contract): `Outbox`, `Durability`, `Record`, plus the errors, the
inspection types, and the read-only inspection functions the CLI and the doctor use on their own
short-lived connection (`connect_blocking`, `stats_blocking`, `dead_letters_blocking`,
`retry_dead_blocking` and their table/JSON renderings), and the consumer rule every consumer
follows (`classify`, `settle_failure`: transient failures retry, a record that fails for good
or the same way `DEFAULT_REPEATS` times becomes a dead letter and its stream moves on).
See `offline_queue._outbox` for delivery semantics and `offline_queue._policy` for the
per-stream ordering rule.
"""

from offline_queue._consumer import (
    DEFAULT_REPEATS,
    Failure,
    FailureKind,
    ReleasePort,
    classify,
    describe,
    failure_kind,
    settle_failure,
)
from offline_queue._inspect import dead_letters_blocking, retry_dead_blocking, stats_blocking
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
from offline_queue._report import dead_letters_json, dead_letters_table, stats_json, stats_table
from offline_queue._schema import OUTBOX_SCHEMA_VERSION, OUTBOX_TABLES_V1, prepare_outbox_db
from offline_queue._store import connect_blocking

__all__ = [
    "DEFAULT_REPEATS",
    "OUTBOX_SCHEMA_VERSION",
    "OUTBOX_TABLES_V1",
    "DeadLetter",
    "Durability",
    "Failure",
    "FailureKind",
    "HealthCallback",
    "InvalidRecordError",
    "Outbox",
    "OutboxClosedError",
    "OutboxCondition",
    "OutboxError",
    "OutboxWriteError",
    "PrepareDatabase",
    "Record",
    "ReleasePort",
    "StreamStats",
    "TelemetryRefusedError",
    "classify",
    "connect_blocking",
    "dead_letters_blocking",
    "dead_letters_json",
    "dead_letters_table",
    "describe",
    "failure_kind",
    "prepare_outbox_db",
    "retry_dead_blocking",
    "settle_failure",
    "stats_blocking",
    "stats_json",
    "stats_table",
]
