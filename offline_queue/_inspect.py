"""Read-only (and operator) views of the outbox for the CLI and the doctor: per-stream stats,
the dead letters, and putting a dead letter back. Each runs on its own short-lived connection
from `connect_blocking`, never through the writer thread."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from offline_queue._model import (
    DeadLetter,
    Durability,
    StreamStats,
)

__all__ = ["dead_letters_blocking", "retry_dead_blocking", "stats_blocking"]


def stats_blocking(conn: sqlite3.Connection, now: float) -> list[StreamStats]:
    """Per-stream depth, in-flight and waiting counts, oldest record and dead letters."""
    live: dict[str, tuple[int, int, int, float | None, int]] = {}
    for stream, depth, in_flight, waiting, oldest, nbytes in conn.execute(
        "SELECT stream, COUNT(*), "
        "COALESCE(SUM(lease_until IS NOT NULL AND lease_until > ?), 0), "
        "COALESCE(SUM((lease_until IS NULL OR lease_until <= ?) AND not_before > ?), 0), "
        "MIN(created_at), COALESCE(SUM(nbytes), 0) FROM outbox GROUP BY stream",
        (now, now, now),
    ):
        live[stream] = (depth, in_flight, waiting, oldest, nbytes)
    dead = dict(conn.execute("SELECT stream, COUNT(*) FROM outbox_dead GROUP BY stream").fetchall())
    out = []
    for stream in sorted(set(live) | set(dead)):
        depth, in_flight, waiting, oldest, nbytes = live.get(stream, (0, 0, 0, None, 0))
        out.append(
            StreamStats(
                stream=stream,
                depth=depth,
                in_flight=in_flight,
                waiting_retry=waiting,
                oldest_at=oldest,
                dead=int(dead.get(stream, 0)),
                nbytes=nbytes,
            )
        )
    return out


def dead_letters_blocking(
    conn: sqlite3.Connection, stream: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters, oldest first, optionally of one stream."""
    sql = (
        "SELECT id, stream, payload, dedupe_key, durability, attempts, created_at, failed_at, reason "
        "FROM outbox_dead"
    )
    params: tuple[Any, ...] = ()
    if stream is not None:
        sql += " WHERE stream = ?"
        params = (stream,)
    sql += " ORDER BY id LIMIT ?"
    return [
        DeadLetter(
            id=r[0],
            stream=r[1],
            payload=json.loads(r[2]),
            dedupe_key=r[3],
            durability=Durability(r[4]),
            attempts=r[5],
            created_at=r[6],
            failed_at=r[7],
            reason=r[8],
        )
        for r in conn.execute(sql, (*params, limit))
    ]


def retry_dead_blocking(conn: sqlite3.Connection, record_id: int) -> bool:
    """Move one dead letter back to its stream with its old id (so it regains its place in line)
    and its attempts reset; False if there is no such dead letter. Call inside a transaction."""
    row = conn.execute(
        "INSERT INTO outbox (id, stream, payload, dedupe_key, durability, attempts, created_at, expires_at, "
        "not_before, lease_until, last_error, nbytes) "
        "SELECT id, stream, payload, dedupe_key, durability, 0, created_at, expires_at, 0, NULL, "
        "reason, nbytes FROM outbox_dead WHERE id = ? RETURNING id",
        (record_id,),
    ).fetchone()
    conn.execute("DELETE FROM outbox_dead WHERE id = ?", (record_id,))
    return row is not None
