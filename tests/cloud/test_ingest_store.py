"""The batch writer against SQLite and a real PostgreSQL: idempotent by envelope id, seq gaps,
device status from retained status and will, quarantine, facts and config replies."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from cloud.fleet_db import migrate_fleet, open_fleet_engine
from cloud.fleet_db.tables import devices, envelopes, fleet_facts, quarantine, seq_gaps, stream_positions
from cloud.ingest._decode import read_message
from cloud.ingest._seq import Position, advance
from cloud.ingest._store import write_batch_blocking
from tests.cloud._messages import conversion, envelope, message, payment, status

T0 = 1_764_500_000.0


def _engine(url: str):
    engine = open_fleet_engine(url)
    migrate_fleet(engine)
    return engine


def _reads(*messages: tuple[str, bytes]):
    return [read_message(topic, payload) for topic, payload in messages]


def test_advance_opens_fills_and_counts_rewinds() -> None:
    p = advance(Position(last_seq=0), [1, 2, 5, 9])
    assert p.last_seq == 9 and p.gaps == ((3, 4), (6, 8)) and p.missing == 5
    p = advance(p, [7, 3])
    assert p.gaps == ((4, 4), (6, 6), (8, 8)) and p.missing == 3
    p = advance(p, [4, 6, 8, 2])
    assert p.gaps == () and p.rewinds == 1 and p.last_seq == 9


def test_batch_is_idempotent_by_envelope_id(fleet_url: str) -> None:
    engine = _engine(fleet_url)
    batch = _reads(
        message(
            envelope("payment", 1, payment("o-1", 120, T0)), envelope("payment", 2, payment("o-2", 80, T0))
        ),
        message(envelope("conversion", 1, conversion("o-1", "U1", T0 + 10))),
    )
    first = write_batch_blocking(engine, batch, T0 + 20)
    again = write_batch_blocking(engine, batch, T0 + 30)
    assert (first.stored, first.duplicates) == (3, 0)
    assert (again.stored, again.duplicates) == (0, 3)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(envelopes)).scalar_one() == 3
        kinds = sorted(r[0] for r in conn.execute(select(fleet_facts.c.kind)))
        assert kinds == ["binding_message", "bound_member", "new_friend", "payment", "payment"]
        pos = conn.execute(select(stream_positions).where(stream_positions.c.stream == "payment")).one()
        assert (pos.last_seq, pos.envelopes, pos.missing) == (2, 2, 0)


def test_gaps_recorded_and_filled_across_batches(fleet_url: str) -> None:
    engine = _engine(fleet_url)
    write_batch_blocking(
        engine, _reads(message(envelope("presence", 1, {}), envelope("presence", 4, {}))), T0
    )
    with engine.connect() as conn:
        assert [(g.first_seq, g.last_seq) for g in conn.execute(select(seq_gaps))] == [(2, 3)]
    write_batch_blocking(engine, _reads(message(envelope("presence", 3, {}))), T0 + 1)
    with engine.connect() as conn:
        assert [(g.first_seq, g.last_seq) for g in conn.execute(select(seq_gaps))] == [(2, 2)]
        assert conn.execute(select(stream_positions.c.missing)).scalar_one() == 1


def test_status_newest_wins_and_will_sets_offline(fleet_url: str) -> None:
    engine = _engine(fleet_url)
    write_batch_blocking(engine, _reads(status("online", T0)), T0)
    write_batch_blocking(engine, _reads(status("offline", T0 + 60)), T0 + 61)
    write_batch_blocking(engine, _reads(status("online", T0)), T0 + 62)  # retained replay of the old one
    with engine.connect() as conn:
        row = conn.execute(select(devices)).one()
    assert row.online is False and row.status_ts == T0 + 60 and row.agent_version == "0.1.0"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("shopedge/v1/store-001/counter-1/up/payment", b"{not json", "not JSON"),
        (
            "shopedge/v1/store-001/counter-1/up/payment",
            b'{"id":"x","kind":"payment","ts":"2026-01-01T00:00:00Z","seq":1,"data":{}}',
            "UUID",
        ),
        ("shopedge/v1/store-001/counter-1/up/payment", b"\xff\xfe", "UTF-8"),
        ("shopedge/v1/store-001/counter-1/status", b'{"state":"sleepy"}', "state"),
    ],
)
def test_malformed_goes_to_quarantine_with_reason(
    fleet_url: str, topic: str, payload: bytes, reason: str
) -> None:
    engine = _engine(fleet_url)
    good = message(envelope("payment", 1, payment("o-1", 120, T0)))
    outcome = write_batch_blocking(engine, _reads((topic, payload), good), T0)
    assert outcome.quarantined == 1 and outcome.stored == 1
    with engine.connect() as conn:
        row = conn.execute(select(quarantine)).one()
    assert reason in row.reason and bytes(row.payload) == payload and row.store_id == "store-001"


def test_wrong_kind_on_topic_is_quarantined() -> None:
    topic, payload = message(envelope("sale", 1, {}))
    read = read_message(topic.replace("/up/sale", "/up/payment"), payload)
    assert read.quarantined is not None and "on the 'payment' topic" in read.quarantined.reason


ODD_DATA = {
    "backslash": "C:\\till\\new",
    "escapes": "tab\there\nnewline\rreturn \\t literal",
    "quote": 'say "hi"',
    "zh": "拿鐵 大杯 NT$120",
    "emoji": "☕🎉",
    "controls": "".join(chr(c) for c in range(1, 32)),
    "copy_marker": "\\.",
    "numbers": [0, -1, 2**53, 1.5e-300, 0.1, -2.5],
    "nested": {"a": [{"b": [None, True, False]}], "empty": {}},
}


def test_envelope_data_is_stored_exactly_whatever_it_holds(fleet_url: str) -> None:
    """COPY text has its own escapes (backslash, tab, newline, `\\.`); what a device sent
    comes back unchanged, on the COPY path and on the staged path of a mixed batch."""
    engine = _engine(fleet_url)
    first = envelope("presence", 1, ODD_DATA)
    write_batch_blocking(engine, _reads(message(first)), T0)
    mixed = _reads(message(first, envelope("presence", 2, {**ODD_DATA, "seq": 2})))
    outcome = write_batch_blocking(engine, mixed, T0 + 1)
    assert (outcome.stored, outcome.duplicates) == (1, 1)
    with engine.connect() as conn:
        rows = {r.seq: r for r in conn.execute(select(envelopes).order_by(envelopes.c.seq))}
    assert rows[1].data == ODD_DATA
    assert rows[2].data == {**ODD_DATA, "seq": 2}
    assert rows[1].received_at == T0 and rows[2].received_at == T0 + 1
    assert rows[1].ts == first.epoch


def test_a_duplicate_inside_a_batch_of_new_envelopes_is_stored_once(fleet_url: str) -> None:
    engine = _engine(fleet_url)
    write_batch_blocking(engine, _reads(message(envelope("presence", 3, {}))), T0)
    batch = _reads(message(*(envelope("presence", seq, {"n": seq}) for seq in range(1, 200))))
    outcome = write_batch_blocking(engine, batch, T0 + 1)
    assert (outcome.stored, outcome.duplicates) == (198, 1)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(envelopes)).scalar_one() == 199
        pos = conn.execute(select(stream_positions)).one()
    assert (pos.last_seq, pos.envelopes, pos.missing) == (199, 199, 0)
