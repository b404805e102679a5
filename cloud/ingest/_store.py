"""Writing one batch of received messages to the fleet database, in one transaction.

Idempotent by envelope id (`INSERT ... ON CONFLICT DO NOTHING ... RETURNING id`): a broker
redelivery or a device re-send stores nothing twice, and only the envelopes that were new
move stream positions, funnel facts, health and config replies forward. Rows are written in
one global key order (envelopes, facts, day summaries, devices, desired config, positions)
so two workers committing at once on PostgreSQL wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from cloud.fleet_db import write_transaction
from cloud.fleet_db.tables import (
    desired_config,
    device_days,
    devices,
    envelopes,
    fleet_facts,
    quarantine,
    seq_gaps,
    stream_positions,
)
from cloud.ingest._decode import (
    Read,
    StatusUpdate,
    StoredEnvelope,
    day_summary_of,
    facts_of,
)
from cloud.ingest._seq import Position, advance

__all__ = ["BatchOutcome", "copy_text", "write_batch_blocking"]

StreamKey = tuple[str, str, str]


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    messages: int
    stored: int
    duplicates: int
    quarantined: int
    statuses: int


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing/do_update."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _greatest(conn: Connection, a: Any, b: Any) -> Any:
    return func.greatest(a, b) if conn.dialect.name == "postgresql" else func.max(a, b)


def write_batch_blocking(engine: Engine, reads: Sequence[Read], received_at: float) -> BatchOutcome:
    """Store every message of the batch, or nothing (the caller acks only after this returns)."""
    unique: dict[str, StoredEnvelope] = {}
    statuses: dict[tuple[str, str], StatusUpdate] = {}
    held = []
    total = 0
    for read in reads:
        for envelope in read.envelopes:
            total += 1
            unique.setdefault(envelope.id, envelope)
        if read.status is not None:
            key = (read.status.store_id, read.status.device_id)
            if key not in statuses or statuses[key].ts < read.status.ts:
                statuses[key] = read.status
        if read.quarantined is not None:
            held.append(read.quarantined)
    ordered = [unique[key] for key in sorted(unique)]
    with write_transaction(engine) as conn:
        new = _insert_envelopes(conn, ordered, received_at)
        _insert_facts(conn, new)
        _upsert_days(conn, new)
        _touch_devices(conn, ordered, statuses, received_at)
        _apply_statuses(conn, statuses)
        _apply_health(conn, new)
        _apply_replies(conn, new, received_at)
        _advance_positions(conn, new, received_at)
        if held:
            conn.execute(
                quarantine.insert(),
                [
                    {
                        "topic": q.topic,
                        "payload": q.payload,
                        "reason": q.reason[:2000],
                        "store_id": q.store_id,
                        "device_id": q.device_id,
                        "received_at": received_at,
                    }
                    for q in held
                ],
            )
    return BatchOutcome(
        messages=len(reads),
        stored=len(new),
        duplicates=total - len(new),
        quarantined=len(held),
        statuses=len(statuses),
    )


def _insert_envelopes(
    conn: Connection, ordered: Sequence[StoredEnvelope], now: float
) -> list[StoredEnvelope]:
    if not ordered:
        return []
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        inserted = _copy_envelopes_pg(conn, ordered, now)
        return [e for e in ordered if e.id in inserted]
    stmt: Insert = (
        _insert(conn, envelopes).on_conflict_do_nothing(index_elements=["id"]).returning(envelopes.c.id)
    )
    rows = [
        {
            "id": e.id,
            "store_id": e.store_id,
            "device_id": e.device_id,
            "stream": e.stream,
            "seq": e.seq,
            "ts": e.ts,
            "data": dict(e.data),
            "received_at": now,
        }
        for e in ordered
    ]
    inserted = {row[0] for row in conn.execute(stmt, rows)}
    return [e for e in ordered if e.id in inserted]


_STAGE = "fleet_envelopes_stage"
_COLUMNS = "id, store_id, device_id, stream, seq, ts, data, received_at"
_SAVEPOINT = "fleet_envelopes_copy"
_BACKSLASH, _ESCAPED_BACKSLASH = "\\", "\\\\"


def copy_text(ordered: Sequence[StoredEnvelope], now: float) -> str:
    """The rows in PostgreSQL's COPY text format (columns `_COLUMNS`), built in one pass.

    The worker's Python (one GIL) is its limit, and a row per `write_row` call cost it about a
    quarter of its rate (one worker 19,100 -> 26,200 envelopes/s in bench/ingest_bench.py;
    the bare COPY loops show the server takes both forms alike). Safe without general
    escaping: the id is a checked UUID, store, device and stream are topic segments
    ([A-Za-z0-9_-], checked by `base.topics`), seq an int, the times finite floats, and
    orjson's JSON has no raw tab, newline or carriage return (JSON escapes every control
    character), so a backslash is the one character COPY would misread.
    """
    received = repr(now)
    return "".join(
        [
            f"{e.id}\t{e.store_id}\t{e.device_id}\t{e.stream}\t{e.seq}\t{e.ts!r}\t"
            f"{orjson.dumps(e.data).decode().replace(_BACKSLASH, _ESCAPED_BACKSLASH)}\t{received}\n"
            for e in ordered
        ]
    )


def _copy_envelopes_pg(conn: Connection, ordered: Sequence[StoredEnvelope], now: float) -> set[str]:
    """The batch's envelopes into `envelopes` by COPY; returns the ids that were new.

    PostgreSQL's COPY has no ON CONFLICT. Almost every batch is all new, so it is first
    COPYed straight into the table inside a savepoint (the bare COPY rate); a batch holding
    a redelivered id fails there with a unique violation, is rolled back to the savepoint and
    goes through a per-session staging table and one INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING id instead. Rows go in id order on both paths, so two workers writing
    the same ids wait for each other instead of deadlocking.
    """
    import psycopg  # only with PostgreSQL: a SQLite-only install (the demo) needs no psycopg
    from psycopg.errors import UniqueViolation

    raw = conn.connection.driver_connection
    assert raw is not None
    rows = copy_text(ordered, now)
    statement = f"COPY envelopes ({_COLUMNS}) FROM STDIN"
    try:
        with raw.cursor() as cur:
            cur.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                with cur.copy(statement) as copy:
                    copy.write(rows)
            except UniqueViolation:
                cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            else:
                cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                return {e.id for e in ordered}
            statement = f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN"
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
                "(LIKE envelopes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(statement) as copy:
                copy.write(rows)
            cur.execute(
                f"INSERT INTO envelopes ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGE} ORDER BY id "
                "ON CONFLICT (id) DO NOTHING RETURNING id"
            )
            inserted = {str(row[0]) for row in cur.fetchall()}
    except psycopg.Error as exc:
        # The same exception classes SQLAlchemy raises for its own statements (DataError for a
        # row the database refuses, OperationalError for a lost connection), so the worker's
        # retry-or-quarantine decision sees one vocabulary.
        raise DBAPIError.instance(
            statement, None, exc, psycopg.Error, connection_invalidated=bool(raw.closed)
        ) from None
    return inserted


def _insert_facts(conn: Connection, new: Iterable[StoredEnvelope]) -> None:
    facts = {fact.key: fact for envelope in new for fact in facts_of(envelope)}
    if not facts:
        return
    rows = [
        {
            "fact_key": key,
            "kind": f.kind,
            "store_id": f.store_id,
            "device_id": f.device_id,
            "at": f.at,
            "order_id": f.order_id,
            "line_user_id": f.line_user_id,
            "amount_twd": f.amount_twd,
            "campaign": f.campaign,
            "envelope_id": f.envelope_id,
        }
        for key, f in sorted(facts.items())
    ]
    conn.execute(_insert(conn, fleet_facts).on_conflict_do_nothing(index_elements=["fact_key"]), rows)


def _upsert_days(conn: Connection, new: Iterable[StoredEnvelope]) -> None:
    summaries = {}
    for envelope in new:
        summary = day_summary_of(envelope)
        if summary is not None:
            summaries[(summary.store_id, summary.device_id, summary.day)] = summary
    for key in sorted(summaries):
        summary = summaries[key]
        values = {name: value for name, value in summary.counts.items()}
        stmt = _insert(conn, device_days).values(
            store_id=summary.store_id,
            device_id=summary.device_id,
            day=summary.day,
            envelope_id=summary.envelope_id,
            **values,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["store_id", "device_id", "day"],
            set_={**{name: stmt.excluded[name] for name in values}, "envelope_id": stmt.excluded.envelope_id},
        )
        conn.execute(stmt)


def _touch_devices(
    conn: Connection,
    ordered: Iterable[StoredEnvelope],
    statuses: dict[tuple[str, str], StatusUpdate],
    now: float,
) -> None:
    keys = {(e.store_id, e.device_id) for e in ordered} | set(statuses)
    if not keys:
        return
    stmt = _insert(conn, devices)
    stmt = stmt.on_conflict_do_update(
        index_elements=["store_id", "device_id"],
        set_={"last_seen": _greatest(conn, devices.c.last_seen, stmt.excluded.last_seen)},
    )
    conn.execute(
        stmt,
        [{"store_id": s, "device_id": d, "first_seen": now, "last_seen": now} for s, d in sorted(keys)],
    )


def _apply_statuses(conn: Connection, statuses: dict[tuple[str, str], StatusUpdate]) -> None:
    """Newest status wins: a retained `online` replayed after the will's `offline` changes nothing."""
    for key in sorted(statuses):
        status = statuses[key]
        conn.execute(
            update(devices)
            .where(devices.c.store_id == status.store_id, devices.c.device_id == status.device_id)
            .where((devices.c.status_ts.is_(None)) | (devices.c.status_ts < status.ts))
            .values(
                online=status.online,
                status_ts=status.ts,
                agent_version=status.agent_version or devices.c.agent_version,
                protocol=status.protocol or devices.c.protocol,
            )
        )


def _apply_health(conn: Connection, new: Iterable[StoredEnvelope]) -> None:
    latest: dict[tuple[str, str], StoredEnvelope] = {}
    for envelope in new:
        if envelope.stream != "health":
            continue
        key = (envelope.store_id, envelope.device_id)
        if key not in latest or latest[key].ts < envelope.ts:
            latest[key] = envelope
    for key in sorted(latest):
        envelope = latest[key]
        depth = envelope.data.get("outbox_depth")
        conn.execute(
            update(devices)
            .where(devices.c.store_id == key[0], devices.c.device_id == key[1])
            .where((devices.c.health_at.is_(None)) | (devices.c.health_at < envelope.ts))
            .values(
                health=dict(envelope.data),
                health_at=envelope.ts,
                outbox_depth=depth if isinstance(depth, int) and not isinstance(depth, bool) else None,
            )
        )


def _apply_replies(conn: Connection, new: Iterable[StoredEnvelope], now: float) -> None:
    """A device's answer to a config change: what it now runs with (or why it refused)."""
    replies = sorted(
        (e for e in new if e.stream == "reply" and e.data.get("command") == "config"),
        key=lambda e: str(e.data.get("request_id")),
    )
    for envelope in replies:
        data = envelope.data
        request_id = data.get("request_id")
        if not isinstance(request_id, str):
            continue
        result = _mapping(data.get("result"))
        effective = _mapping(result.get("effective")) if "effective" in result else None
        applied = _mapping(result.get("set"))
        version = result.get("agent_version")
        ok = data.get("ok") is True
        rows = conn.execute(
            select(desired_config.c.store_id, desired_config.c.device_id, desired_config.c.key)
            .where(desired_config.c.request_id == request_id)
            .where(desired_config.c.store_id == envelope.store_id)
            .where(desired_config.c.device_id == envelope.device_id)
            .order_by(desired_config.c.key)
        ).all()
        for store_id, device_id, key in rows:
            values: dict[str, Any] = {
                "reported_at": now,
                "reported_ok": ok,
                "reported_detail": str(data.get("detail", ""))[:2000],
                "reported_version": str(version)[:64] if isinstance(version, str) else None,
            }
            if ok:
                source = effective if effective is not None and key in effective else applied
                if key in source:
                    values["reported"] = source[key]
            conn.execute(
                update(desired_config)
                .where(
                    desired_config.c.store_id == store_id,
                    desired_config.c.device_id == device_id,
                    desired_config.c.key == key,
                )
                .values(**values)
            )


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _advance_positions(conn: Connection, new: Iterable[StoredEnvelope], now: float) -> None:
    by_stream: dict[StreamKey, list[StoredEnvelope]] = defaultdict(list)
    for envelope in new:
        by_stream[(envelope.store_id, envelope.device_id, envelope.stream)].append(envelope)
    if not by_stream:
        return
    keys = sorted(by_stream)
    conn.execute(
        _insert(conn, stream_positions).on_conflict_do_nothing(
            index_elements=["store_id", "device_id", "stream"]
        ),
        [{"store_id": s, "device_id": d, "stream": k} for s, d, k in keys],
    )
    key_cols = tuple_(stream_positions.c.store_id, stream_positions.c.device_id, stream_positions.c.stream)
    query = select(stream_positions).where(key_cols.in_(keys)).order_by(*key_cols.clauses)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = {(r.store_id, r.device_id, r.stream): r for r in conn.execute(query)}
    gap_cols = tuple_(seq_gaps.c.store_id, seq_gaps.c.device_id, seq_gaps.c.stream)
    gaps: dict[StreamKey, list[tuple[int, int]]] = defaultdict(list)
    for row in conn.execute(select(seq_gaps).where(gap_cols.in_(keys)).order_by(seq_gaps.c.first_seq)):
        gaps[(row.store_id, row.device_id, row.stream)].append((int(row.first_seq), int(row.last_seq)))
    updates = []
    changed_gaps: list[StreamKey] = []
    fresh_gaps = []
    for key in keys:
        row = current[key]
        before = Position(last_seq=int(row.last_seq), gaps=tuple(gaps[key]), rewinds=int(row.rewinds))
        arrived = by_stream[key]
        after = advance(before, (e.seq for e in arrived))
        newest = max(arrived, key=lambda e: e.ts)
        updates.append(
            {
                "k_store": key[0],
                "k_device": key[1],
                "k_stream": key[2],
                "last_seq": after.last_seq,
                "last_ts": max(newest.ts, row.last_ts or 0.0),
                "last_received_at": now,
                "envelopes": int(row.envelopes) + len(arrived),
                "missing": after.missing,
                "rewinds": after.rewinds,
            }
        )
        if after.gaps != before.gaps:
            changed_gaps.append(key)
            fresh_gaps += [
                {
                    "store_id": key[0],
                    "device_id": key[1],
                    "stream": key[2],
                    "first_seq": first,
                    "last_seq": last,
                    "detected_at": now,
                }
                for first, last in after.gaps
            ]
    conn.execute(
        update(stream_positions)
        .where(
            stream_positions.c.store_id == bindparam("k_store"),
            stream_positions.c.device_id == bindparam("k_device"),
            stream_positions.c.stream == bindparam("k_stream"),
        )
        .values(
            last_seq=bindparam("last_seq"),
            last_ts=bindparam("last_ts"),
            last_received_at=bindparam("last_received_at"),
            envelopes=bindparam("envelopes"),
            missing=bindparam("missing"),
            rewinds=bindparam("rewinds"),
        ),
        updates,
    )
    if changed_gaps:
        conn.execute(delete(seq_gaps).where(gap_cols.in_(changed_gaps)))
        if fresh_gaps:
            conn.execute(seq_gaps.insert(), fresh_gaps)
