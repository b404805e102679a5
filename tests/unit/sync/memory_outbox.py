"""An in-memory twin of `offline_queue.Outbox` for sync unit tests.

Follows the outbox's documented rules (offline_queue/_policy.py): per-stream FIFO by id; a claim
stops at the first record in flight or waiting for a retry; `attempts` counts claims; a release
keeps the record at the head; ack deletes. It records every call so tests can assert on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class MemRecord:
    id: int
    stream: str
    payload: dict[str, Any]
    dedupe_key: str | None
    attempts: int
    created_at: float


@dataclass
class _Row:
    id: int
    stream: str
    payload: dict[str, Any]
    dedupe_key: str | None
    created_at: float
    attempts: int = 0
    lease_until: float | None = None
    not_before: float = 0.0


@dataclass
class MemoryOutbox:
    clock: Callable[[], float] = time.time
    rows: dict[int, _Row] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    dead: list[tuple[int, str]] = field(default_factory=list)
    max_attempts: int = 10
    _next: int = 1

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
        durability: Any = None,
    ) -> int:
        for row in self.rows.values():
            if dedupe_key is not None and row.stream == stream and row.dedupe_key == dedupe_key:
                return row.id
        rid = self._next
        self._next += 1
        self.rows[rid] = _Row(
            id=rid, stream=stream, payload=payload, dedupe_key=dedupe_key, created_at=self.clock()
        )
        return rid

    async def claim(self, stream: str, limit: int = 100, lease: float = 30.0) -> list[MemRecord]:
        now = self.clock()
        out: list[MemRecord] = []
        for row in sorted((r for r in self.rows.values() if r.stream == stream), key=lambda r: r.id):
            if (row.lease_until is not None and row.lease_until > now) or row.not_before > now:
                break
            row.attempts += 1
            row.lease_until = now + lease
            out.append(
                MemRecord(
                    id=row.id,
                    stream=row.stream,
                    payload=row.payload,
                    dedupe_key=row.dedupe_key,
                    attempts=row.attempts,
                    created_at=row.created_at,
                )
            )
            if len(out) >= limit:
                break
        self.calls.append(("claim", (stream, [r.id for r in out])))
        return out

    async def ack(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self.calls.append(("ack", ids))
        for rid in ids:
            self.rows.pop(rid, None)

    async def release(
        self,
        record_id: int,
        error: str,
        *,
        retry_at: float | None = None,
        permanent: bool = False,
        transient: bool = False,
    ) -> None:
        self.calls.append(("release", (record_id, error, retry_at)))
        row = self.rows.get(record_id)
        if row is None:
            return
        if permanent or (row.attempts >= self.max_attempts and not transient):
            self.dead.append((record_id, error))
            del self.rows[record_id]
            return
        row.lease_until = None
        row.not_before = retry_at if retry_at is not None else self.clock() + 1.0

    async def depth(self, stream: str | None = None) -> int:
        return sum(1 for r in self.rows.values() if stream is None or r.stream == stream)
