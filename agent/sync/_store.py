"""Sync state in the agent DB: per-stream sequence numbers and the live (downlinked) config.

A record keeps the `seq` it was first sent with, so a resend after a lost PUBACK or a crash
carries the same `seq` (and the same `id`, derived from the record itself), and consumers
see gaps only where something was really missing. Mapping rows are pruned once the outbox
has acknowledged their records. Blocking functions end in `_blocking` and run in a thread.
"""

from __future__ import annotations

import json
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
    bindparam,
    delete,
    select,
)
from sqlalchemy.dialects.sqlite import insert

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

# The statements of every claim, built once: a reused statement skips SQLAlchemy's per-call
# construction and cache-key generation. INSERTs take their columns from the parameter dicts;
# `w_` names bind the rest (an expanding IN renders one placeholder per id, as a list would).
_FORGET = delete(sync_seq).where(sync_seq.c.record_id.in_(bindparam("w_ids", expanding=True)))
_KNOWN = select(sync_seq.c.record_id, sync_seq.c.seq).where(
    sync_seq.c.record_id.in_(bindparam("w_ids", expanding=True))
)
_LAST = select(sync_streams.c.last_seq).where(sync_streams.c.stream == bindparam("w_stream"))
_INSERT_SEQ = insert(sync_seq)
_UPSERT_SEQ = _INSERT_SEQ.on_conflict_do_update(
    index_elements=["record_id"], set_={"seq": _INSERT_SEQ.excluded.seq}
)
_SET_LAST = insert(sync_streams).on_conflict_do_update(
    index_elements=["stream"], set_={"last_seq": bindparam("w_last_seq")}
)


def _forget(conn: Any, acked: list[int]) -> None:
    for start in range(0, len(acked), 500):
        conn.execute(_FORGET, {"w_ids": acked[start : start + 500]})


def _set_last(conn: Any, stream: str, last: int) -> None:
    conn.execute(_SET_LAST, {"stream": stream, "last_seq": last, "w_last_seq": last})


def assign_seqs_blocking(
    engine: Engine, stream: str, record_ids: Sequence[int], *, acked: Iterable[int] = ()
) -> dict[int, int]:
    """The seq of each record (oldest first), assigning the next numbers to new ones.

    `acked` ids are forgotten in the same transaction (their records are gone from the outbox).
    """
    with engine.begin() as conn:
        _forget(conn, list(acked))
        known: dict[int, int] = {}
        for start in range(0, len(record_ids), 500):
            rows = conn.execute(_KNOWN, {"w_ids": list(record_ids[start : start + 500])})
            known.update({int(row.record_id): int(row.seq) for row in rows})
        fresh = [rid for rid in record_ids if rid not in known]
        if fresh:
            last = conn.execute(_LAST, {"w_stream": stream}).scalar()
            seq = int(last or 0)
            values = []
            for rid in sorted(fresh):
                seq += 1
                known[rid] = seq
                values.append({"record_id": rid, "stream": stream, "seq": seq})
            conn.execute(_INSERT_SEQ, values)
            _set_last(conn, stream, seq)
    return {rid: known[rid] for rid in record_ids}


def record_seqs_blocking(
    engine: Engine, stream: str, seqs: Mapping[int, int], *, acked: Iterable[int] = ()
) -> None:
    """Store seqs the uplink numbered in memory (continuing the stream's count); forget `acked`.

    A record numbered again (a dead letter put back) takes its new number.
    """
    with engine.begin() as conn:
        _forget(conn, list(acked))
        if not seqs:
            return
        conn.execute(
            _UPSERT_SEQ, [{"record_id": rid, "stream": stream, "seq": seq} for rid, seq in seqs.items()]
        )
        _set_last(conn, stream, max(seqs.values()))


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
