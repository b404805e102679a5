"""Sync state in the agent DB: per-stream sequence numbers and the live (downlinked) config.

A record keeps the `seq` it was first sent with, so a resend after a lost PUBACK or a crash
carries the same `seq` (and the same `id`, derived from the record itself), and consumers
see gaps only where something was really missing. Mapping rows are pruned once the outbox
has acknowledged their records. Blocking functions end in `_blocking` and run in a thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.dialects.sqlite import insert

from base.statedb import chunks, placeholders, transaction

__all__ = [
    "LIVE_VERSION_KEY",
    "assign_seqs_blocking",
    "last_seqs_blocking",
    "live_config_version_blocking",
    "load_live_config_blocking",
    "record_seqs_blocking",
    "save_live_config_blocking",
]

metadata = MetaData()

sync_streams = Table(
    "sync_streams",
    metadata,
    Column("stream", String(32), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)
sync_seq = Table(
    "sync_seq",
    metadata,
    Column("record_id", Integer, primary_key=True, autoincrement=False),
    Column("stream", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
)
sync_live_config = Table(
    "sync_live_config",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("request_id", String(36), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The statements of every claim and uplink batch, as plain SQL on the pooled sqlite3 connection
# (base.statedb): SQLAlchemy's execute path cost more than these statements (bench/footprint.py).
_LAST = "SELECT last_seq FROM sync_streams WHERE stream = ?"
_INSERT_SEQ = "INSERT INTO sync_seq (record_id, stream, seq) VALUES (?, ?, ?)"
_UPSERT_SEQ = _INSERT_SEQ + " ON CONFLICT (record_id) DO UPDATE SET seq = excluded.seq"
_SET_LAST = (
    "INSERT INTO sync_streams (stream, last_seq) VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq"
)


def _forget(conn: sqlite3.Connection, acked: list[int]) -> None:
    for chunk in chunks(acked):
        conn.execute(f"DELETE FROM sync_seq WHERE record_id IN ({placeholders(len(chunk))})", chunk)


def assign_seqs_blocking(
    engine: Engine, stream: str, record_ids: Sequence[int], *, acked: Iterable[int] = ()
) -> dict[int, int]:
    """The seq of each record (oldest first), assigning the next numbers to new ones.

    `acked` ids are forgotten in the same transaction (their records are gone from the outbox).
    """
    with transaction(engine) as conn:
        _forget(conn, list(acked))
        known: dict[int, int] = {}
        for chunk in chunks(record_ids):
            rows = conn.execute(
                f"SELECT record_id, seq FROM sync_seq WHERE record_id IN ({placeholders(len(chunk))})",
                list(chunk),
            )
            known.update({int(rid): int(seq) for rid, seq in rows})
        fresh = [rid for rid in record_ids if rid not in known]
        if fresh:
            row = conn.execute(_LAST, (stream,)).fetchone()
            seq = int(row[0]) if row is not None else 0
            values = []
            for rid in sorted(fresh):
                seq += 1
                known[rid] = seq
                values.append((rid, stream, seq))
            conn.executemany(_INSERT_SEQ, values)
            conn.execute(_SET_LAST, (stream, seq))
    return {rid: known[rid] for rid in record_ids}


def record_seqs_blocking(
    engine: Engine, stream: str, seqs: Mapping[int, int], *, acked: Iterable[int] = ()
) -> None:
    """Store seqs the uplink numbered in memory (continuing the stream's count); forget `acked`.

    A record numbered again (a dead letter put back) takes its new number.
    """
    with transaction(engine) as conn:
        _forget(conn, list(acked))
        if not seqs:
            return
        conn.executemany(_UPSERT_SEQ, [(rid, stream, seq) for rid, seq in seqs.items()])
        conn.execute(_SET_LAST, (stream, max(seqs.values())))


def last_seqs_blocking(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {row.stream: int(row.last_seq) for row in conn.execute(select(sync_streams))}


# The row holding the live config's version (how many changes were applied): not a config key.
LIVE_VERSION_KEY = "_version"


def load_live_config_blocking(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(sync_live_config).where(sync_live_config.c.key != LIVE_VERSION_KEY))
        return {row.key: json.loads(row.value) for row in rows}


def live_config_version_blocking(engine: Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            select(sync_live_config.c.value).where(sync_live_config.c.key == LIVE_VERSION_KEY)
        ).scalar()
    return int(json.loads(value)) if value is not None else 0


def save_live_config_blocking(
    engine: Engine, values: dict[str, Any], request_id: str, *, version: int | None = None
) -> None:
    """Persist applied live keys (and the new version) in one transaction (all or none)."""
    now = time.time()
    if version is not None:
        values = {**values, LIVE_VERSION_KEY: version}
    with engine.begin() as conn:
        for key, value in values.items():
            stmt = insert(sync_live_config).values(
                key=key, value=json.dumps(value), request_id=request_id, updated_at=now
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["key"],
                    set_={"value": stmt.excluded.value, "request_id": request_id, "updated_at": now},
                )
            )
