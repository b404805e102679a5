"""The ingest worker as a real process on a real Mosquitto, on SQLite and PostgreSQL.

Acks wait for the commit: a worker SIGKILLed after it received a batch but before the
database took it loses nothing; its restart (same client id, persistent session) gets the
unacknowledged messages again. A database that is down makes the worker wait, ack nothing and
lose nothing. Malformed messages are quarantined and the worker goes on.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from cloud.fleet_db import migrate_fleet, open_fleet_engine
from cloud.fleet_db.tables import devices, envelopes, quarantine
from tests.cloud._fleet import (
    Publisher,
    Worker,
    count_envelopes,
    fleet_broker,
    wait_until,
    write_cloud_toml,
)
from tests.cloud._messages import envelope, message, payment, status

T0 = 1_764_500_000.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    with fleet_broker(tmp_path) as port:
        yield port


def _payments(count: int, start: int = 1, device: str = "counter-1") -> list[tuple[str, bytes]]:
    return [
        message(envelope("payment", seq, payment(f"o-{seq}", 100 + seq, T0), device=device), device=device)
        for seq in range(start, start + count)
    ]


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class DatabaseBlock:
    """Holds the fleet database so the worker cannot commit: a table lock on PostgreSQL, the
    write lock on SQLite."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: object | None = None

    def __enter__(self) -> DatabaseBlock:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn = psycopg.connect(_dsn(self.url))  # type: ignore[assignment]
            conn.execute("LOCK TABLE envelopes IN ACCESS EXCLUSIVE MODE")
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._conn is not None
        self._conn.rollback()  # type: ignore[attr-defined]
        self._conn.close()  # type: ignore[attr-defined]


def _prepare(url: str) -> None:
    engine = open_fleet_engine(url)
    migrate_fleet(engine)
    engine.dispose()


def test_kill_between_receive_and_commit_loses_nothing(tmp_path: Path, broker: int, fleet_url: str) -> None:
    _prepare(fleet_url)
    # One batch takes everything that arrives within 1.5 s, so all 50 are in the blocked batch.
    toml = write_cloud_toml(tmp_path, database_url=fleet_url, port=broker, batch_wait_ms=1500)
    worker = Worker(toml, "a", tmp_path)
    publisher = Publisher(broker)
    try:
        worker.start()
        worker.wait_for_log("mqtt connected")
        batch = _payments(50)
        with DatabaseBlock(fleet_url):
            publisher.publish_all(batch)
            wait_until(lambda: worker.received() >= 50, 20, "the worker to receive all 50 messages")
            worker.kill()  # received, not committed, not acked
        assert count_envelopes(fleet_url) == 0
        worker.start()
        wait_until(lambda: count_envelopes(fleet_url) == 50, 30, "the broker's redelivery to be stored")
        assert worker.received() >= 50, "the restarted worker got the unacked messages again"
        time.sleep(1.0)
        assert count_envelopes(fleet_url) == 50
    finally:
        publisher.close()
        worker.stop()


def test_database_down_acks_nothing_and_loses_nothing(tmp_path: Path, broker: int, fleet_url: str) -> None:
    _prepare(fleet_url)
    worker = Worker(write_cloud_toml(tmp_path, database_url=fleet_url, port=broker), "a", tmp_path)
    publisher = Publisher(broker)
    try:
        worker.start()
        worker.wait_for_log("mqtt connected")
        publisher.publish_all(_payments(20))
        wait_until(lambda: count_envelopes(fleet_url) == 20, 20, "the first 20 stored")
        mark = len(worker.text())
        with _database_down(fleet_url):
            publisher.publish_all(_payments(30, start=21))
            worker.wait_for_log("database write failed", within_s=30, after=mark)
            time.sleep(1.5)  # a few retries with backoff
            assert worker.proc is not None and worker.proc.poll() is None, "the worker keeps running"
        wait_until(
            lambda: count_envelopes(fleet_url) == 50, 30, "the held batch stored after the database returned"
        )
        # And it still acks: a restart brings nothing back to store (no redelivery of acked ones).
        worker.stop()
        worker.start()
        worker.wait_for_log("mqtt connected")
        time.sleep(1.0)
        assert worker.received() == 0
        assert count_envelopes(fleet_url) == 50
    finally:
        publisher.close()
        worker.stop()


class _database_down:
    """PostgreSQL: no connections allowed to the database and the worker's one terminated.
    SQLite: the write lock held for longer than the worker's busy timeout."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._block: DatabaseBlock | None = None

    def __enter__(self) -> None:
        if self.url.startswith("sqlite"):
            self._block = DatabaseBlock(self.url).__enter__()
            return
        name = self.url.rsplit("/", 1)[1]
        admin = _dsn(self.url.rsplit("/", 1)[0] + "/postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    def __exit__(self, *exc: object) -> None:
        if self._block is not None:
            self._block.__exit__()
            return
        name = self.url.rsplit("/", 1)[1]
        admin = _dsn(self.url.rsplit("/", 1)[0] + "/postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_malformed_is_quarantined_and_the_worker_goes_on(tmp_path: Path, broker: int, fleet_url: str) -> None:
    _prepare(fleet_url)
    worker = Worker(write_cloud_toml(tmp_path, database_url=fleet_url, port=broker), "a", tmp_path)
    publisher = Publisher(broker)
    try:
        worker.start()
        worker.wait_for_log("mqtt connected")
        bad = [
            ("shopedge/v1/store-001/counter-1/up/payment", b"{oops"),
            ("shopedge/v1/store-001/counter-1/up/payment", b"[]"),
            # JSON that PostgreSQL's jsonb refuses (NUL): quarantined by the database's own reason.
            message(envelope("sale", 1, {"note": "a\u0000b"})),
        ]
        publisher.publish_all([*bad, *_payments(5)])
        topic, payload = status("online", T0)
        publisher.publish(topic, payload, retain=True).wait_for_publish(5)
        wait_until(lambda: count_envelopes(fleet_url) >= 5, 20, "the good messages stored")
        engine = open_fleet_engine(fleet_url)
        with engine.connect() as conn:
            wait_until(lambda: _count(engine, quarantine) >= 2, 20, "the bad ones quarantined")
            reasons = [r.reason for r in conn.execute(select(quarantine).order_by(quarantine.c.id))]
            wait_until(lambda: _online(engine), 20, "the retained status applied")
        engine.dispose()
        assert any("not JSON" in r for r in reasons) and any("at least one envelope" in r for r in reasons)
        if fleet_url.startswith("postgresql"):
            assert any("database refused" in r for r in reasons), reasons
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        publisher.close()
        worker.stop()


def _count(engine: object, table: object) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _online(engine: object) -> bool:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(devices.c.online)).scalar() is True


_ = envelopes
