"""`Outbox`: the asyncio face of the durable queue. Validates input on the caller's side, hands
each operation to the writer thread, and awaits the group commit that contains it.

Streams are FIFO per name (see `offline_queue._policy` for the exact ordering rule: a stream
never hands out a record while an older one is in flight or waiting for its retry). Delivery is
at-least-once: a consumer claims, delivers, and acks only after the receiver acknowledged; if it
crashes, the lease runs out and the record is claimed again, so consumers dedupe by record id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from offline_queue._inspect import dead_letters_blocking, retry_dead_blocking, stats_blocking
from offline_queue._model import (
    DeadLetter,
    Durability,
    OutboxError,
    OutboxWriteError,
    Record,
    StreamStats,
)
from offline_queue._store import Store, connect_blocking
from offline_queue._writer import BatchResult, Writer

__all__ = ["HealthCallback", "InvalidRecordError", "Outbox", "OutboxCondition", "PrepareDatabase"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class OutboxCondition(StrEnum):
    """The outbox's health as plain data; the agent maps it to its own levels."""

    OK = "ok"
    OVER_BUDGET = "over_budget"
    WRITE_FAILED = "write_failed"


HealthCallback = Callable[[OutboxCondition, str], None]
# Brings the database file at a path to the schema the outbox needs (the agent's migrations).
PrepareDatabase = Callable[[Path], None]

_STREAM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
MAX_DEDUPE_KEY = 255
MAX_CLAIM = 10_000
# An outbox record is an event, not a file: anything this big is a bug upstream, and one such
# record would eat the telemetry budget of a whole day.
MAX_PAYLOAD_BYTES = 1 << 20
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_VALID_STREAMS: set[str] = set()  # names already checked: put() is the hot path


class InvalidRecordError(OutboxError, ValueError):
    """The caller passed something the outbox cannot store (bad stream name, payload, expiry...)."""


class Outbox:
    """The durable SQLite outbox. One per process; open with `await Outbox.open(path)`.

    `put()` returns once the commit holding the record is on disk at its durability class;
    concurrent puts share one transaction and one fsync (group commit).
    """

    def __init__(
        self,
        *,
        path: Path,
        writer: Writer,
        clock: Callable[[], float],
        on_health: HealthCallback | None,
    ) -> None:
        """Use `Outbox.open()`; this only wires already-opened parts together."""
        self.path = path
        self._writer = writer
        self._clock = clock
        self._on_health = on_health
        self._health: tuple[OutboxCondition, str] | None = None
        self._closing = False
        self._on_stored: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        disk_budget_bytes: int = 200 * 2**20,
        max_attempts: int = 10,
        prepare: PrepareDatabase | None = None,
        clock: Callable[[], float] = time.time,
        on_health: HealthCallback | None = None,
    ) -> Outbox:
        """Open the outbox in the state DB at `path`.

        Args:
            path: the agent's SQLite file.
            disk_budget_bytes: beyond this, expired then oldest telemetry is shed and new
                telemetry refused; critical records are still accepted.
            max_attempts: claims after which a failing record becomes a dead letter.
            prepare: called first (in a thread) to create or migrate the database; without it
                the file must already hold the outbox tables (the daemon migrates itself).
            clock: wall clock for created_at, leases and retries (tests pass a fake one).
            on_health: called on the loop with (condition, detail) when the outbox's health changes:
                write_failed, over_budget or ok.

        Raises:
            OutboxError: the file cannot be opened or has no outbox tables (without `prepare`).
        """
        if disk_budget_bytes <= 0:
            raise InvalidRecordError(f"disk_budget_bytes must be positive, got {disk_budget_bytes}")
        if max_attempts < 1:
            raise InvalidRecordError(f"max_attempts must be at least 1, got {max_attempts}")
        loop = asyncio.get_running_loop()
        store = await asyncio.to_thread(
            _open_store_blocking, path, prepare, disk_budget_bytes, max_attempts, clock
        )
        outbox: Outbox
        writer = Writer(store, loop, lambda failure: outbox._after_batch(failure))
        outbox = cls(path=path, writer=writer, clock=clock, on_health=on_health)
        writer.start()
        outbox._report_health(None)
        return outbox

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- producers ---------------------------------------------------------------------------

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Durability = Durability.CRITICAL,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int:
        """Store one record; returns its id once durable. A repeated `dedupe_key` in the same
        stream returns the first record's id (for a week after that record was acked).

        If the awaiting task is cancelled, the record may still be written (it was already
        handed to the writer); put it again with the same `dedupe_key` to make that safe.

        Raises:
            InvalidRecordError: bad stream name, payload not a JSON object, bad key or expiry.
            TelemetryRefusedError: telemetry while the disk budget is reached.
            OutboxWriteError: SQLite could not write (the record is not stored; health goes red).
            OutboxClosedError: after `close()`.
        """
        _check_stream(stream)
        durability = Durability(durability)
        if not isinstance(payload, dict):
            raise InvalidRecordError(
                f"stream {stream!r}: payload must be a dict, got {type(payload).__name__}"
            )
        try:
            payload_json = _ENCODER.encode(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidRecordError(f"stream {stream!r}: payload is not JSON-serialisable: {exc}") from None
        if len(payload_json) > MAX_PAYLOAD_BYTES // 4 and len(payload_json.encode()) > MAX_PAYLOAD_BYTES:
            raise InvalidRecordError(f"stream {stream!r}: payload is over {MAX_PAYLOAD_BYTES} bytes as JSON")
        if dedupe_key is not None and not (0 < len(dedupe_key) <= MAX_DEDUPE_KEY):
            raise InvalidRecordError(f"stream {stream!r}: dedupe_key must be 1..{MAX_DEDUPE_KEY} characters")
        if expires_at is not None:
            if durability is Durability.CRITICAL:
                raise InvalidRecordError(f"stream {stream!r}: critical records never expire; drop expires_at")
            if not math.isfinite(expires_at):
                raise InvalidRecordError(f"stream {stream!r}: expires_at must be a finite epoch time")
        result: int = await self._writer.submit(
            lambda s: s.put_blocking(stream, payload_json, durability, dedupe_key, expires_at),
            full=durability is Durability.CRITICAL,
        )
        return result

    async def transaction(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run another room's write transaction on the writer's connection (the state DB is one
        file): `body` runs inside a group commit with `synchronous=FULL` and must not commit or
        roll back itself; its result (or whatever it raises) comes back once that commit is
        durable. If the batch it shares fails, it runs again alone, so it reads what it
        needs inside the transaction and has no side effects outside it.

        Raises:
            OutboxClosedError: after `close()`.
            Whatever `body` raises (an `sqlite3.OperationalError`, the file refusing writes,
            also turns the outbox's health red), and `sqlite3.Error` when the commit fails.
        """
        result: _T = await self._writer.submit(lambda s: body(s.conn), full=True, foreign=True)
        return result

    # --- consumers ---------------------------------------------------------------------------

    async def claim(self, stream: str, limit: int = 100, lease: float = 30.0) -> list[Record]:
        """Lease up to `limit` of the stream's oldest records for `lease` seconds, oldest first.

        Returns an empty list while the stream's head is in flight or waiting for a retry.
        """
        _check_stream(stream)
        if not 0 < limit <= MAX_CLAIM:
            raise InvalidRecordError(f"claim limit must be 1..{MAX_CLAIM}, got {limit}")
        if not (lease > 0 and math.isfinite(lease)):
            raise InvalidRecordError(f"lease must be a positive number of seconds, got {lease}")
        # A claim only changes leases and attempt counts, which a restart resets anyway: its commit
        # need not wait for an fsync (the next critical commit syncs it along).
        records: list[Record] = await self._writer.submit(
            lambda s: s.claim_blocking(stream, limit, lease), full=False
        )
        return records

    async def ack(self, ids: Iterable[int]) -> None:
        """Mark records delivered (deletes them). Unknown ids are ignored (already acked or shed)."""
        id_list = [int(i) for i in ids]
        if not id_list:
            return
        await self._writer.submit(lambda s: s.ack_blocking(id_list), full=True)

    async def release(
        self,
        record_id: int,
        error: str,
        *,
        retry_at: float | None = None,
        permanent: bool = False,
        transient: bool = False,
    ) -> None:
        """Give a claimed record back after a failed delivery.

        It keeps its place at the head of its stream and is retried at `retry_at` (wall clock;
        default: the agent's capped exponential backoff). A permanent error, or a record that
        used its `max_attempts`, goes to the dead letters with `error` as the reason; a
        `transient` failure (database busy, network, timeout) only backs off, however often.
        Consumers decide which with `offline_queue.classify` / `settle_failure`.
        """
        if retry_at is not None and not math.isfinite(retry_at):
            raise InvalidRecordError(f"retry_at must be a finite epoch time, got {retry_at}")
        await self._writer.submit(
            lambda s: s.release_blocking(int(record_id), str(error), retry_at, permanent, transient),
            full=True,
        )

    # --- inspection --------------------------------------------------------------------------

    async def depth(self, stream: str | None = None) -> int:
        """Records not yet acked (in flight included), in one stream or all."""
        if stream is not None:
            _check_stream(stream)
        depth: int = await self._writer.submit(lambda s: s.depth_blocking(stream), full=False, write=False)
        return depth

    async def stats(self) -> list[StreamStats]:
        """Per-stream depth, in-flight, waiting-for-retry, oldest record and dead-letter counts."""
        stats: list[StreamStats] = await self._writer.submit(
            lambda s: stats_blocking(s.conn, s.clock()), full=False, write=False
        )
        return stats

    async def dead_letters(self, stream: str | None = None, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = await self._writer.submit(
            lambda s: dead_letters_blocking(s.conn, stream, limit), full=False, write=False
        )
        return letters

    async def retry_dead(self, record_id: int) -> bool:
        """Put a dead letter back at its old place in its stream with fresh attempts."""

        def retry(store: Store) -> bool:
            found = retry_dead_blocking(store.conn, record_id)
            store.recount_usage_blocking()
            return found

        found: bool = await self._writer.submit(retry, full=True)
        return found

    async def maintain(self) -> None:
        """Housekeeping now (the writer also does it after a minute idle): drop expired telemetry,
        forget dedupe keys of records acked more than a week ago, recount the disk usage."""
        await self._writer.submit(lambda s: s.housekeeping_blocking(), full=True)

    async def close(self) -> None:
        """Finish every queued operation, then close the connection. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)
        # Let the writer's last call_soon_threadsafe callbacks resolve their futures.
        await asyncio.sleep(0)

    def on_stored(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on the loop after each commit that stored a new record, so a consumer
        can wait for records instead of claiming every stream a few times a second (an idle
        uplink's polling was most of the daemon's idle CPU). Returns the unsubscribe function."""
        self._on_stored.append(callback)
        return lambda: self._on_stored.remove(callback) if callback in self._on_stored else None

    # --- health ------------------------------------------------------------------------------

    def _after_batch(self, result: BatchResult) -> None:
        if result.stored:
            for callback in list(self._on_stored):
                callback()
        failing = self._health is not None and self._health[0] is OutboxCondition.WRITE_FAILED
        if result.failure is None and not result.stored and failing:
            # A read, claim, ack, release or deduplicated put that worked does not prove the
            # disk takes new records again (on a full disk claims and acks still fit in pages
            # the WAL already has): stay red until a record is really stored.
            return
        self._report_health(result.failure)

    def _report_health(self, failure: OutboxWriteError | None) -> None:
        store = self._writer.store
        if failure is not None:
            state = (OutboxCondition.WRITE_FAILED, f"cannot write: {failure}")
        elif store.usage.total > store.budget:
            over = f"over disk budget: {store.usage.total} of {store.budget} bytes"
            state = (OutboxCondition.OVER_BUDGET, over)
        else:
            state = (OutboxCondition.OK, "ok")
        if state == self._health:
            return
        if failure is not None:
            log.error("outbox write failed", extra={"error": str(failure)})
        self._health = state
        if self._on_health is not None:
            self._on_health(*state)


def _check_stream(stream: str) -> None:
    if type(stream) is str and stream in _VALID_STREAMS:
        return
    if not isinstance(stream, str) or not _STREAM.match(stream):
        raise InvalidRecordError(
            f"stream name must be 1-64 of a-z 0-9 _ . - starting with a letter or digit, got {stream!r}"
        )
    if len(_VALID_STREAMS) < 1000:
        _VALID_STREAMS.add(stream)


def _open_store_blocking(
    path: Path, prepare: PrepareDatabase | None, budget: int, max_attempts: int, clock: Callable[[], float]
) -> Store:
    path = Path(path)
    if prepare is not None:
        prepare(path)
    elif not path.exists():
        raise OutboxError(f"{path}: no such state database")
    conn = connect_blocking(path)
    store = Store(conn, budget=budget, max_attempts=max_attempts, clock=clock)
    conn.execute("BEGIN IMMEDIATE")
    try:
        released = store.reset_leases_blocking()
        store.recount_usage_blocking()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    if released:
        log.info("outbox: leases of the previous process ended", extra={"count": released})
    return store
