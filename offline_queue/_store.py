"""Blocking SQLite side of the outbox: the connection and the SQL for each operation.

Every function here blocks and ends in `_blocking`; only the writer thread (`_writer`) or a
read-only inspection (`_inspect`, the CLI and the doctor on their own short-lived connection)
calls them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from offline_queue._model import (
    Durability,
    OutboxError,
    Record,
    TelemetryRefusedError,
)
from offline_queue._policy import (
    Admission,
    HeadRow,
    admit,
    plan_claim,
    release_outcome,
    retry_delay,
)

__all__ = [
    "HOUSEKEEPING_IDLE_S",
    "KEY_RETENTION_S",
    "MAX_BATCH",
    "ROW_OVERHEAD",
    "Store",
    "Usage",
    "connect_blocking",
]

log = logging.getLogger(__name__)


# Bytes a row costs beyond its payload, stream and key text: rowid, 11 columns, two index entries.
ROW_OVERHEAD = 64
# A dedupe key outlives its acked record by a week: longer than any offline spell we plan for,
# so a till that re-sends an old operation after reconnecting still gets the original id.
# Telemetry dead letters are kept as long.
KEY_RETENTION_S = 7 * 24 * 3600.0
# Sweeping expired telemetry scans the telemetry index, so a full queue refusing telemetry
# does it at most once a second instead of on every put.
EXPIRY_SWEEP_MIN_S = 1.0
# Housekeeping (expiry, key pruning, usage recount) runs when the writer has been idle this long.
HOUSEKEEPING_IDLE_S = 60.0
# Most operations in one transaction; bounds the latency of the first put in a huge burst.
MAX_BATCH = 2000
_CHUNK = 500  # ids per `IN (...)` statement

_TABLES = {"outbox", "outbox_keys", "outbox_dead"}
CACHE_KIB = 512  # page cache per connection, as base.statedb: the OS page cache holds the file anyway


def connect_blocking(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection with the outbox's pragmas; autocommit mode, transactions are explicit."""
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        conn.close()
        raise OutboxError(f"{path}: cannot open the state database: {exc}") from exc
    if not names >= _TABLES:
        conn.close()
        raise OutboxError(f"{path}: no outbox tables; apply the migrations first (`shopedge run` does)")
    return conn


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


@dataclass
class Usage:
    """Estimated bytes the outbox's live records take (what the disk budget is checked against)."""

    total: int = 0
    telemetry: int = 0

    def add(self, nbytes: int, durability: str) -> None:
        self.total += nbytes
        if durability == Durability.TELEMETRY:
            self.telemetry += nbytes

    def remove(self, nbytes: int, durability: str) -> None:
        self.add(-nbytes, durability)


def record_size(stream: str, payload_json: str, dedupe_key: str | None) -> int:
    """The budget cost of one record (UTF-8 payload and key, plus a fixed row overhead)."""
    return len(payload_json.encode()) + len(stream) + len((dedupe_key or "").encode()) + ROW_OVERHEAD


class Store:
    """The outbox's operations on one connection. Not thread-safe: the writer thread owns it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        budget: int,
        max_attempts: int,
        clock: Callable[[], float],
    ) -> None:
        self.conn = conn
        self.budget = budget
        self.max_attempts = max_attempts
        self.clock = clock
        self.usage = Usage()
        self._last_sweep = float("-inf")
        # Budget states already logged, so a full outbox logs once per episode, not once per put.
        self._refusing = False
        self._over_budget = False
        # Records inserted by this connection (the writer rolls it back with a failed
        # transaction): a commit that raised it proves the disk takes new data.
        self.inserted = 0

    # --- maintenance -------------------------------------------------------------------------

    def recount_usage_blocking(self) -> None:
        rows = self.conn.execute(
            "SELECT durability, COALESCE(SUM(nbytes), 0) FROM outbox GROUP BY durability"
        )
        usage = Usage()
        for durability, nbytes in rows:
            usage.add(int(nbytes), durability)
        self.usage = usage

    def reset_leases_blocking(self) -> int:
        """End every lease: called when the (one) owning process opens the outbox."""
        cur = self.conn.execute("UPDATE outbox SET lease_until = NULL WHERE lease_until IS NOT NULL")
        return cur.rowcount

    def housekeeping_blocking(self) -> None:
        now = self.clock()
        self.shed_expired_blocking(now, force=True)
        # Telemetry that gave up is not worth an operator's time after a week; critical dead
        # letters stay until someone retries them.
        self.conn.execute(
            "DELETE FROM outbox_dead WHERE durability = ? AND failed_at < ?",
            (Durability.TELEMETRY.value, now - KEY_RETENTION_S),
        )
        self.conn.execute(
            "DELETE FROM outbox_keys WHERE created_at < ? "
            "AND record_id NOT IN (SELECT id FROM outbox) AND record_id NOT IN (SELECT id FROM outbox_dead)",
            (now - KEY_RETENTION_S,),
        )
        self.recount_usage_blocking()

    def shed_expired_blocking(self, now: float, *, force: bool = False) -> int:
        """Delete expired telemetry (rate-limited unless `force`); returns how many."""
        if not force and now - self._last_sweep < EXPIRY_SWEEP_MIN_S:
            return 0
        self._last_sweep = now
        rows = self.conn.execute(
            "DELETE FROM outbox WHERE durability = ? AND expires_at IS NOT NULL AND expires_at <= ? "
            "RETURNING nbytes",
            (Durability.TELEMETRY.value, now),
        ).fetchall()
        for (nbytes,) in rows:
            self.usage.remove(nbytes, Durability.TELEMETRY)
        if rows:
            log.info("outbox: expired telemetry dropped", extra={"count": len(rows)})
        return len(rows)

    def _shed_oldest_telemetry_blocking(self, need: int) -> None:
        freed = 0
        ids: list[int] = []
        for rid, nbytes in self.conn.execute(
            "SELECT id, nbytes FROM outbox WHERE durability = ? ORDER BY id", (Durability.TELEMETRY.value,)
        ):
            ids.append(rid)
            freed += nbytes
            if freed >= need:
                break
        for chunk in _chunks(ids):
            self.conn.execute(f"DELETE FROM outbox WHERE id IN ({_marks(len(chunk))})", chunk)
        self.usage.remove(freed, Durability.TELEMETRY)
        log.warning(
            "outbox: disk budget reached, oldest telemetry shed to keep a critical record",
            extra={"count": len(ids), "bytes": freed, "budget": self.budget},
        )

    # --- operations --------------------------------------------------------------------------

    def put_blocking(
        self,
        stream: str,
        payload_json: str,
        durability: Durability,
        dedupe_key: str | None,
        expires_at: float | None,
    ) -> int | OutboxError:
        """Insert one record (or find its dedupe twin); a refusal is returned, not raised."""
        conn = self.conn
        if dedupe_key is not None:
            row = conn.execute(
                "SELECT record_id FROM outbox_keys WHERE stream = ? AND dedupe_key = ?", (stream, dedupe_key)
            ).fetchone()
            if row is not None:
                return int(row[0])
        now = self.clock()
        size = record_size(stream, payload_json, dedupe_key)
        critical = durability is Durability.CRITICAL
        if self.usage.total + size > self.budget:
            self.shed_expired_blocking(now)
            decision = admit(
                critical=critical,
                used=self.usage.total,
                size=size,
                budget=self.budget,
                telemetry_used=self.usage.telemetry,
            )
            if decision is Admission.REFUSE:
                if not self._refusing:
                    self._refusing = True
                    log.warning(
                        "outbox: disk budget reached, new telemetry refused until there is room",
                        extra={"stream": stream, "used": self.usage.total, "budget": self.budget},
                    )
                return TelemetryRefusedError(
                    f"stream {stream!r}: telemetry refused, the outbox is at its disk budget "
                    f"({self.usage.total} of {self.budget} bytes)"
                )
            if decision is Admission.SHED_OLDEST_TELEMETRY:
                self._shed_oldest_telemetry_blocking(self.usage.total + size - self.budget)
            elif decision is Admission.OVER_BUDGET and not self._over_budget:
                self._over_budget = True
                log.warning(
                    "outbox: over its disk budget with critical records only; still accepting them",
                    extra={"stream": stream, "used": self.usage.total, "budget": self.budget},
                )
        else:
            self._refusing = self._over_budget = False
        row = conn.execute(
            "INSERT INTO outbox (stream, payload, dedupe_key, durability, created_at, expires_at, nbytes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (stream, payload_json, dedupe_key, durability.value, now, expires_at, size),
        ).fetchone()
        rid = int(row[0])
        self.inserted += 1
        if dedupe_key is not None:
            conn.execute(
                "INSERT INTO outbox_keys (stream, dedupe_key, record_id, created_at) VALUES (?, ?, ?, ?)",
                (stream, dedupe_key, rid, now),
            )
        self.usage.add(size, durability)
        return rid

    def claim_blocking(self, stream: str, limit: int, lease: float) -> list[Record]:
        conn = self.conn
        now = self.clock()
        cur = conn.execute(
            "SELECT id, attempts, expires_at, not_before, lease_until FROM outbox "
            "WHERE stream = ? ORDER BY id",
            (stream,),
        )
        rows = (
            HeadRow(id=r[0], attempts=r[1], expires_at=r[2], not_before=r[3], lease_until=r[4]) for r in cur
        )
        plan = plan_claim(rows, now=now, limit=limit, max_attempts=self.max_attempts)
        cur.close()
        for chunk in _chunks(plan.expire):
            for nbytes, durability in conn.execute(
                f"DELETE FROM outbox WHERE id IN ({_marks(len(chunk))}) RETURNING nbytes, durability", chunk
            ):
                self.usage.remove(nbytes, durability)
        for rid, reason in plan.dead:
            self._bury_blocking(rid, reason, now)
        records: list[Record] = []
        for chunk in _chunks(plan.claim):
            for rid, payload, key, durability, attempts, created_at in conn.execute(
                "UPDATE outbox SET lease_until = ?, attempts = attempts + 1 "
                f"WHERE id IN ({_marks(len(chunk))}) "
                "RETURNING id, payload, dedupe_key, durability, attempts, created_at",
                (now + lease, *chunk),
            ):
                records.append(
                    Record(
                        id=rid,
                        stream=stream,
                        payload=json.loads(payload),
                        dedupe_key=key,
                        durability=Durability(durability),
                        attempts=attempts,
                        created_at=created_at,
                    )
                )
        records.sort(key=lambda r: r.id)
        return records

    def ack_blocking(self, ids: Sequence[int]) -> None:
        for chunk in _chunks(ids):
            for nbytes, durability in self.conn.execute(
                f"DELETE FROM outbox WHERE id IN ({_marks(len(chunk))}) RETURNING nbytes, durability", chunk
            ):
                self.usage.remove(nbytes, durability)

    def release_blocking(
        self, record_id: int, error: str, retry_at: float | None, permanent: bool, transient: bool = False
    ) -> None:
        row = self.conn.execute("SELECT attempts FROM outbox WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            log.info(
                "outbox: release of a record that is gone (acked or shed)", extra={"record_id": record_id}
            )
            return
        now = self.clock()
        dead, reason = release_outcome(
            attempts=row[0],
            max_attempts=self.max_attempts,
            permanent=permanent,
            error=error,
            transient=transient,
        )
        if dead:
            self._bury_blocking(record_id, reason, now)
            return
        not_before = retry_at if retry_at is not None else now + retry_delay(row[0])
        self.conn.execute(
            "UPDATE outbox SET lease_until = NULL, not_before = ?, last_error = ? WHERE id = ?",
            (not_before, error, record_id),
        )

    def _bury_blocking(self, record_id: int, reason: str, now: float) -> None:
        """Move one record to the dead letters."""
        row = self.conn.execute(
            "INSERT INTO outbox_dead (id, stream, payload, dedupe_key, durability, attempts, created_at, "
            "expires_at, failed_at, reason, nbytes) "
            "SELECT id, stream, payload, dedupe_key, durability, attempts, created_at, expires_at, "
            "?, ?, nbytes FROM outbox WHERE id = ? RETURNING stream, nbytes, durability",
            (now, reason, record_id),
        ).fetchone()
        self.conn.execute("DELETE FROM outbox WHERE id = ?", (record_id,))
        if row is not None:
            self.usage.remove(row[1], row[2])
            log.warning(
                "outbox: record dead-lettered",
                extra={"record_id": record_id, "stream": row[0], "reason": reason},
            )

    def depth_blocking(self, stream: str | None) -> int:
        if stream is None:
            row = self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        else:
            row = self.conn.execute("SELECT COUNT(*) FROM outbox WHERE stream = ?", (stream,)).fetchone()
        return int(row[0])
