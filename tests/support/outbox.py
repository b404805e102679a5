"""The shared outbox for tests: the real `offline_queue.Outbox` when it is importable, else a
memory twin that keeps the contract's semantics (FIFO per stream with head-of-line blocking,
leases, wall-clock retry_at, dead letters after max_attempts, dedupe keys that outlive the ack).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class MemRecord:
    id: int
    stream: str
    payload: dict[str, Any]
    dedupe_key: str | None
    durability: Any
    attempts: int
    created_at: float


@dataclass
class _Slot:
    record: MemRecord
    leased_until: float = 0.0
    retry_at: float = 0.0


class MemoryOutbox:
    def __init__(self, clock: Callable[[], float] = time.time, max_attempts: int = 10) -> None:
        self.clock = clock
        self.max_attempts = max_attempts
        self._next = 1
        self._slots: dict[int, _Slot] = {}
        self._keys: dict[tuple[str, str], int] = {}
        self.dead: dict[int, tuple[MemRecord, str]] = {}
        self.acked: list[int] = []

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Any = "critical",
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int:
        if dedupe_key is not None and (stream, dedupe_key) in self._keys:
            return self._keys[(stream, dedupe_key)]
        record = MemRecord(
            id=self._next,
            stream=stream,
            payload=payload,
            dedupe_key=dedupe_key,
            durability=durability,
            attempts=0,
            created_at=self.clock(),
        )
        self._next += 1
        self._slots[record.id] = _Slot(record)
        if dedupe_key is not None:
            self._keys[(stream, dedupe_key)] = record.id
        return record.id

    async def claim(self, stream: str, limit: int = 100, lease: float = 30.0) -> list[MemRecord]:
        now = self.clock()
        out: list[MemRecord] = []
        for slot in sorted(self._slots.values(), key=lambda s: s.record.id):
            if slot.record.stream != stream:
                continue
            if slot.leased_until > now or slot.retry_at > now:
                break  # head-of-line: nothing younger overtakes an in-flight or waiting record
            slot.record = replace(slot.record, attempts=slot.record.attempts + 1)
            slot.leased_until = now + lease
            out.append(slot.record)
            if len(out) >= limit:
                break
        return out

    async def ack(self, ids: Iterable[int]) -> None:
        for record_id in ids:
            if self._slots.pop(record_id, None) is not None:
                self.acked.append(record_id)

    async def release(
        self, record_id: int, error: str, *, retry_at: float | None = None, permanent: bool = False
    ) -> None:
        slot = self._slots.get(record_id)
        if slot is None:
            return
        if permanent or slot.record.attempts >= self.max_attempts:
            del self._slots[record_id]
            self.dead[record_id] = (slot.record, error)
            return
        slot.leased_until = 0.0
        slot.retry_at = retry_at if retry_at is not None else self.clock() + 1.0

    async def depth(self, stream: str | None = None) -> int:
        return sum(1 for s in self._slots.values() if stream is None or s.record.stream == stream)

    async def close(self) -> None:
        return None


async def open_outbox(path: Path, clock: Callable[[], float] = time.time) -> Any:
    """The real outbox at `path` if the package has landed, else a `MemoryOutbox`."""
    try:
        from offline_queue import Outbox  # type: ignore[attr-defined]
    except ImportError:
        return MemoryOutbox(clock=clock)
    return await Outbox.open(path, clock=clock)
