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

from base.statedb import StateDB, chunks, placeholders

__all__ = [
    "LIVE_VERSION_KEY",
    "assign_seqs_blocking",
    "last_seqs_blocking",
    "live_config_version_blocking",
    "load_live_config_blocking",
    "save_live_config_blocking",
    "store_seqs",
]

# Every statement is plain SQL on the pooled sqlite3 connection (base.statedb): SQLAlchemy's
# execute path cost more than these statements (bench/footprint.py). The tables
# (sync_streams, sync_seq, sync_live_config) are defined by the migration 0400_sync.
_SELECT_LAST_SEQ = "SELECT last_seq FROM sync_streams WHERE stream = ?"
_INSERT_SEQ = "INSERT INTO sync_seq (record_id, stream, seq) VALUES (?, ?, ?)"
_UPSERT_SEQ = _INSERT_SEQ + " ON CONFLICT (record_id) DO UPDATE SET seq = excluded.seq"
_SET_LAST = (
    "INSERT INTO sync_streams (stream, last_seq) VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq"
)
# IN lists take `placeholders(len(chunk))` in the braces, one chunk of ids at a time.
_SELECT_SEQS_IN = "SELECT record_id, seq FROM sync_seq WHERE record_id IN ({})"
_DELETE_SEQS_IN = "DELETE FROM sync_seq WHERE record_id IN ({})"
_SELECT_LAST_SEQS = "SELECT stream, last_seq FROM sync_streams"
_SELECT_LIVE_CONFIG = "SELECT key, value FROM sync_live_config WHERE key != ?"
_SELECT_LIVE_VALUE = "SELECT value FROM sync_live_config WHERE key = ?"
_UPSERT_LIVE_CONFIG = (
    "INSERT INTO sync_live_config (key, value, request_id, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " value = excluded.value, request_id = excluded.request_id, updated_at = excluded.updated_at"
)


def _forget(conn: sqlite3.Connection, acked: list[int]) -> None:
    for chunk in chunks(acked):
        conn.execute(_DELETE_SEQS_IN.format(placeholders(len(chunk))), chunk)


def assign_seqs_blocking(
    db: StateDB, stream: str, record_ids: Sequence[int], *, acked: Iterable[int] = ()
) -> dict[int, int]:
    """The seq of each record (oldest first), assigning the next numbers to new ones.

    `acked` ids are forgotten in the same transaction (their records are gone from the outbox).
    """
    with db.transaction() as conn:
        _forget(conn, list(acked))
        known: dict[int, int] = {}
        for chunk in chunks(record_ids):
            rows = conn.execute(_SELECT_SEQS_IN.format(placeholders(len(chunk))), list(chunk))
            known.update({int(rid): int(seq) for rid, seq in rows})
        fresh = [rid for rid in record_ids if rid not in known]
        if fresh:
            row = conn.execute(_SELECT_LAST_SEQ, (stream,)).fetchone()
            seq = int(row[0]) if row is not None else 0
            values = []
            for rid in sorted(fresh):
                seq += 1
                known[rid] = seq
                values.append((rid, stream, seq))
            conn.executemany(_INSERT_SEQ, values)
            conn.execute(_SET_LAST, (stream, seq))
    return {rid: known[rid] for rid in record_ids}


def store_seqs(
    conn: sqlite3.Connection, stream: str, seqs: Mapping[int, int], *, acked: Iterable[int] = ()
) -> None:
    """Store seqs the uplink numbered in memory (continuing the stream's count); forget `acked`.
    A transaction body (`StateDB.write`: in the daemon, the state DB's one writer thread).

    A record numbered again (a dead letter put back) takes its new number.
    """
    _forget(conn, list(acked))
    if not seqs:
        return
    conn.executemany(_UPSERT_SEQ, [(rid, stream, seq) for rid, seq in seqs.items()])
    conn.execute(_SET_LAST, (stream, max(seqs.values())))


def last_seqs_blocking(db: StateDB) -> dict[str, int]:
    with db.transaction() as conn:
        return {str(stream): int(last_seq) for stream, last_seq in conn.execute(_SELECT_LAST_SEQS)}


# The row holding the live config's version (how many changes were applied): not a config key.
LIVE_VERSION_KEY = "_version"


def load_live_config_blocking(db: StateDB) -> dict[str, Any]:
    with db.transaction() as conn:
        rows = conn.execute(_SELECT_LIVE_CONFIG, (LIVE_VERSION_KEY,))
        return {str(key): json.loads(value) for key, value in rows}


def live_config_version_blocking(db: StateDB) -> int:
    with db.transaction() as conn:
        row = conn.execute(_SELECT_LIVE_VALUE, (LIVE_VERSION_KEY,)).fetchone()
    return int(json.loads(row[0])) if row is not None else 0


def save_live_config_blocking(
    db: StateDB, values: dict[str, Any], request_id: str, *, version: int | None = None
) -> None:
    """Persist applied live keys (and the new version) in one transaction (all or none)."""
    now = time.time()
    if version is not None:
        values = {**values, LIVE_VERSION_KEY: version}
    with db.transaction() as conn:
        conn.executemany(
            _UPSERT_LIVE_CONFIG,
            [(key, json.dumps(value), request_id, now) for key, value in values.items()],
        )
