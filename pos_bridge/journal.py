"""The payment journal: every attempt and every state change, in the agent DB and the outbox.

Owns the `payments` and `payment_idempotency` tables (migrations 0200_payments and
0250_idempotency_scope: a key belongs to a scope, payment or refund, so a payment's
Idempotency-Key can never match a refund's). The agent DB
row is the source of truth and is written (synchronous=FULL) before any LINE Pay call the
state implies; the same snapshot then goes to the outbox stream `payment` for the cloud, with
`dedupe_key = payment:{line_order_id}:{version}`. `outboxed_version` records what the outbox
already has, so a crash between the two writes is repaired at the next start.

A write SQLite refuses (disk full, I/O error) raises `JournalWriteError` and reports the
journal red through `on_health`; only a later journal write that commits turns it green again.

Blocking reads end in `_blocking` and run only through `asyncio.to_thread`; writes are
transaction bodies (`_body`) run by `StateDB.write`, on the outbox's writer thread in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from base.statedb import StateDB, placeholders
from pos_bridge.payment_flow import NON_FINAL, Method, Payment, State

__all__ = [
    "DuplicateOrder",
    "IdempotencyConflict",
    "IdempotencyScope",
    "Journal",
    "JournalWriteError",
    "OutboxLike",
    "Remembered",
    "StaleWrite",
    "StorageHealth",
]

log = logging.getLogger(__name__)
# The payments table's columns, in the order of the migrations that made them
# (agent/migrations/versions/0200_payments.py, 0250_idempotency_scope.py).
_NAMES = (
    "line_order_id",
    "order_id",
    "attempt",
    "method",
    "amount",
    "currency",
    "product_name",
    "state",
    "version",
    "transaction_id",
    "payment_url",
    "access_token",
    "paid_amount",
    "refunded_amount",
    "refund_pending",
    "refund_base",
    "fail_after_refund",
    "sent_at",
    "unknown_since",
    "error_code",
    "error_message",
    "member_phone_hash",
    "created_at",
    "updated_at",
    "outboxed_version",
)
_FIELDS = [f.name for f in dataclasses.fields(Payment)]
_COLUMNS = ", ".join(_NAMES)

# Plain SQL on the state DB's pooled sqlite3 connections (base.statedb: why not SQLAlchemy).
_COUNT_ATTEMPTS = "SELECT count(*) FROM payments WHERE order_id = ?"
_INSERT_PAYMENT = f"INSERT INTO payments ({_COLUMNS}) VALUES ({', '.join(':' + name for name in _NAMES)})"
_INSERT_KEY = (
    "INSERT INTO payment_idempotency (scope, key, request_hash, order_id, line_order_id, created_at)"
    " VALUES (:scope, :key, :request_hash, :order_id, :line_order_id, :created_at)"
)
_LATEST = f"SELECT {_COLUMNS} FROM payments WHERE order_id = ? ORDER BY attempt DESC LIMIT 1"
_BY_LINE = f"SELECT {_COLUMNS} FROM payments WHERE line_order_id = ?"
_BY_KEY = "SELECT request_hash, line_order_id FROM payment_idempotency WHERE scope = ? AND key = ?"
# SET: the payment's fields and updated_at; `w_`-prefixed names bind the WHERE clause.
_SAVE = (
    f"UPDATE payments SET {', '.join(f'{name} = :{name}' for name in [*_FIELDS, 'updated_at'])}"
    " WHERE line_order_id = :w_line_order_id AND version < :w_version"
)
_MARK_OUTBOXED = "UPDATE payments SET outboxed_version = ? WHERE line_order_id = ? AND outboxed_version < ?"
# At start: the attempts to reconcile, and the journal entries the outbox is missing.
_NON_FINAL_STATES = [str(state) for state in NON_FINAL]
_NON_FINAL = (
    f"SELECT {_COLUMNS} FROM payments WHERE state IN ({placeholders(len(_NON_FINAL_STATES))})"
    " ORDER BY created_at"
)
_UNSENT = f"SELECT {_COLUMNS} FROM payments WHERE outboxed_version < version"


class DuplicateOrder(Exception):
    """The order already has a live attempt (not failed or cancelled)."""

    def __init__(self, existing: Payment) -> None:
        super().__init__(f"order {existing.order_id} already has a {existing.state} payment")
        self.existing = existing


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


class StaleWrite(Exception):
    """Someone else changed the payment since it was read (version mismatch)."""


class JournalWriteError(Exception):
    """SQLite could not write the journal (disk full, I/O error): nothing of this change is stored."""


class IdempotencyScope(StrEnum):
    """Which request an Idempotency-Key belongs to: the same key text in two scopes never collides."""

    PAYMENT = "payment"
    REFUND = "refund"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Remembered:
    """An Idempotency-Key to store in the same transaction as the state change it caused."""

    scope: IdempotencyScope
    key: str
    request_hash: str


# Called on the loop after each journal write: (True, "") once a write commits, (False, why) when one fails.
StorageHealth = Callable[[bool, str], None]
_T = TypeVar("_T")


class OutboxLike(Protocol):
    """The part of `offline_queue.Outbox` the journal uses."""

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Any = ...,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int: ...


def _row(payment: Payment) -> dict[str, Any]:
    values = {name: getattr(payment, name) for name in _FIELDS}
    values["method"] = str(payment.method)
    values["state"] = str(payment.state)
    return values


def _payment(row: Sequence[Any]) -> Payment:
    stored = dict(zip(_NAMES, row, strict=True))
    values = {name: stored[name] for name in _FIELDS}
    values["method"] = Method(values["method"])
    values["state"] = State(values["state"])
    values["fail_after_refund"] = bool(values["fail_after_refund"])
    return Payment(**values)


def snapshot(payment: Payment) -> dict[str, Any]:
    """The outbox payload for one journal entry (no payment URL/token: they are short-lived secrets)."""
    data = _row(payment)
    data.pop("payment_url")
    data.pop("access_token")
    return data


class Journal:
    """Async facade over the journal tables (one per process)."""

    def __init__(
        self,
        db: StateDB,
        *,
        outbox: Callable[[], OutboxLike | None],
        clock: Callable[[], float],
        on_health: StorageHealth | None = None,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock
        self._on_health = on_health
        self._healthy: bool | None = None
        self._marks: dict[str, int] = {}  # line_order_id -> version the outbox has, not yet marked
        self._marker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ blocking

    def _create_body(
        self,
        conn: sqlite3.Connection,
        payment: Payment,
        *,
        idempotency_key: str | None,
        request_hash: str,
        phone_hash: str | None,
    ) -> Payment:
        now = self._clock()
        (attempts,) = conn.execute(_COUNT_ATTEMPTS, (payment.order_id,)).fetchone()
        attempt = int(attempts) + 1
        # "." never appears in a POS order id (API pattern), so retries cannot collide with another order.
        line_order_id = payment.order_id if attempt == 1 else f"{payment.order_id}.{attempt}"
        fresh = dataclasses.replace(payment, line_order_id=line_order_id)
        try:
            conn.execute(
                _INSERT_PAYMENT,
                {
                    **_row(fresh),
                    "attempt": attempt,
                    "member_phone_hash": phone_hash,
                    "updated_at": now,
                    "outboxed_version": -1,
                },
            )
        except sqlite3.IntegrityError:
            existing = self._latest(conn, payment.order_id)
            if existing is None:
                raise
            raise DuplicateOrder(existing) from None
        if idempotency_key is not None:
            conn.execute(
                _INSERT_KEY,
                {
                    "scope": str(IdempotencyScope.PAYMENT),
                    "key": idempotency_key,
                    "request_hash": request_hash,
                    "order_id": payment.order_id,
                    "line_order_id": line_order_id,
                    "created_at": now,
                },
            )
        return fresh

    @staticmethod
    def _latest(conn: sqlite3.Connection, order_id: str) -> Payment | None:
        row = conn.execute(_LATEST, (order_id,)).fetchone()
        return _payment(row) if row is not None else None

    def _latest_blocking(self, order_id: str) -> Payment | None:
        with self._db.transaction() as conn:
            return self._latest(conn, order_id)

    def _by_line_blocking(self, line_order_id: str) -> Payment | None:
        with self._db.transaction() as conn:
            row = conn.execute(_BY_LINE, (line_order_id,)).fetchone()
        return _payment(row) if row is not None else None

    def _by_key_blocking(self, scope: IdempotencyScope, key: str) -> tuple[str, Payment] | None:
        with self._db.transaction() as conn:
            row = conn.execute(_BY_KEY, (str(scope), key)).fetchone()
            if row is None:
                return None
            request_hash, line_order_id = row
            found = conn.execute(_BY_LINE, (line_order_id,)).fetchone()
        return (request_hash, _payment(found)) if found is not None else None

    def _save_body(self, conn: sqlite3.Connection, payment: Payment, remember: Remembered | None) -> None:
        if remember is not None:  # same transaction: a replayed request can never apply twice
            conn.execute(
                _INSERT_KEY,
                {
                    "scope": str(remember.scope),
                    "key": remember.key,
                    "request_hash": remember.request_hash,
                    "order_id": payment.order_id,
                    "line_order_id": payment.line_order_id,
                    "created_at": self._clock(),
                },
            )
        cursor = conn.execute(
            _SAVE,
            {
                **_row(payment),
                "updated_at": self._clock(),
                "w_line_order_id": payment.line_order_id,
                "w_version": payment.version,
            },
        )
        if cursor.rowcount != 1:
            raise StaleWrite(f"{payment.line_order_id} v{payment.version}")

    def _non_final_blocking(self) -> list[Payment]:
        with self._db.transaction() as conn:
            rows = conn.execute(_NON_FINAL, _NON_FINAL_STATES).fetchall()
        return [_payment(row) for row in rows]

    def _unsent_blocking(self) -> list[Payment]:
        with self._db.transaction() as conn:
            rows = conn.execute(_UNSENT).fetchall()
        return [_payment(row) for row in rows]

    @staticmethod
    def _mark_outboxed_body(conn: sqlite3.Connection, marks: Sequence[tuple[str, int]]) -> None:
        conn.executemany(_MARK_OUTBOXED, [(version, key, version) for key, version in marks])

    # ------------------------------------------------------------ async

    async def _write(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run one journal write transaction (`StateDB.write`: the outbox's writer thread in the
        daemon); a refused write becomes `JournalWriteError`."""
        try:
            result = await self._db.write(body)
        except sqlite3.OperationalError as exc:
            detail = f"cannot write the payment journal: {exc}"
            self._report(False, detail)
            raise JournalWriteError(detail) from None
        self._report(True, "")
        return result

    def _report(self, ok: bool, detail: str) -> None:
        if ok == self._healthy:
            return
        self._healthy = ok
        if not ok:
            log.error("payment journal write failed", extra={"error": detail})
        if self._on_health is not None:
            self._on_health(ok, detail)

    async def create(
        self,
        payment: Payment,
        *,
        idempotency_key: str | None = None,
        request_hash: str = "",
        phone_hash: str | None = None,
        replicate: bool = True,
    ) -> Payment:
        """Journal a new attempt (before any LINE Pay call); picks the LINE order id.

        With `replicate=False` the caller sends it to the outbox later with `replicate()`, as
        with `save`.

        Raises:
            DuplicateOrder: the order has a live attempt.
            JournalWriteError: SQLite refused the write.
        """
        fresh = await self._write(
            functools.partial(
                self._create_body,
                payment=payment,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                phone_hash=phone_hash,
            )
        )
        if replicate:
            await self._to_outbox(fresh)
        return fresh

    async def save(
        self, payment: Payment, *, remember: Remembered | None = None, replicate: bool = True
    ) -> None:
        """Journal a state change (before any call it implies), with the request's idempotency key.

        With `replicate=False` the caller sends it to the outbox later with `replicate()` (the
        agent DB row is the durable journal entry; the outbox copy is for the cloud).

        Raises:
            StaleWrite: the payment changed since it was read.
            JournalWriteError: SQLite refused the write.
        """
        await self._write(functools.partial(self._save_body, payment=payment, remember=remember))
        if replicate:
            await self._to_outbox(payment)

    async def replicate(self, payment: Payment) -> None:
        """Put a journaled state on the outbox stream `payment`."""
        await self._to_outbox(payment)

    async def latest(self, order_id: str) -> Payment | None:
        return await asyncio.to_thread(self._latest_blocking, order_id)

    async def by_line_order_id(self, line_order_id: str) -> Payment | None:
        return await asyncio.to_thread(self._by_line_blocking, line_order_id)

    async def by_idempotency_key(self, scope: IdempotencyScope, key: str) -> tuple[str, Payment] | None:
        """The request hash and payment an Idempotency-Key of `scope` was first used for."""
        return await asyncio.to_thread(self._by_key_blocking, scope, key)

    async def non_final(self) -> list[Payment]:
        return await asyncio.to_thread(self._non_final_blocking)

    async def flush_outbox(self) -> int:
        """Send the outbox every journal entry it is missing (after a crash); returns how many."""
        await self.settle_marks()
        unsent = await asyncio.to_thread(self._unsent_blocking)
        for payment in unsent:
            await self._to_outbox(payment)
        await self.settle_marks()
        return len(unsent)

    async def settle_marks(self) -> None:
        """Wait for the outboxed marks still being written."""
        while self._marker is not None:
            await asyncio.gather(self._marker, return_exceptions=True)

    async def _to_outbox(self, payment: Payment) -> None:
        outbox = self._outbox()
        if outbox is None:
            return
        try:
            await outbox.put(
                "payment", snapshot(payment), dedupe_key=f"payment:{payment.line_order_id}:{payment.version}"
            )
        except Exception:
            # The journal row is the truth and is already durable; the next start re-sends it.
            log.exception("outbox put failed; payment journal entry will be re-sent at start")
            return
        # The mark only spares the next start a re-send (deduped by key), so it is written off
        # the sale's path, and the marks that pile up while one is being written go together in
        # the next transaction: a sale waits no thread hop or commit for them.
        self._marks[payment.line_order_id] = max(payment.version, self._marks.get(payment.line_order_id, -1))
        if self._marker is None:
            self._marker = asyncio.create_task(self._write_marks(), name="shopedge.journal.marks")

    async def _write_marks(self) -> None:
        try:
            while self._marks:
                marks, self._marks = list(self._marks.items()), {}
                with contextlib.suppress(JournalWriteError):
                    # Not written: the outbox has them (deduped by key); the next flush re-sends them.
                    await self._write(functools.partial(self._mark_outboxed_body, marks=marks))
        finally:
            self._marker = None
