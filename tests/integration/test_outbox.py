"""The outbox on real SQLite files: contract API, ordering, dedupe, leases, retries, dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.db import current_heads, migrate, open_engine, prepare_state_db, script_heads
from offline_queue import (
    Durability,
    InvalidRecordError,
    Outbox,
    OutboxClosedError,
    OutboxCondition,
    OutboxError,
    Record,
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "shopedge.db"


async def test_put_claim_ack_in_order(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        ids = [await box.put("sale", {"n": i}) for i in range(5)]
        assert ids == sorted(ids)
        await box.put("presence", {"beacon": "x"}, durability=Durability.TELEMETRY)
        assert await box.depth() == 6
        assert await box.depth("sale") == 5
        got = await box.claim("sale", limit=3)
        assert [r.payload["n"] for r in got] == [0, 1, 2]
        assert got[0] == Record(
            id=ids[0],
            stream="sale",
            payload={"n": 0},
            dedupe_key=None,
            durability=Durability.CRITICAL,
            attempts=1,
            created_at=clock.now,
        )
        # The head batch is in flight: the stream hands out nothing else until it is settled.
        assert await box.claim("sale") == []
        # Other streams are independent.
        assert [r.stream for r in await box.claim("presence")] == ["presence"]
        await box.ack(r.id for r in got)
        rest = await box.claim("sale")
        assert [r.payload["n"] for r in rest] == [3, 4]
        await box.ack([r.id for r in rest])
        assert await box.depth("sale") == 0


async def test_dedupe_key_returns_existing_id_even_after_ack(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        first, second = await asyncio.gather(
            box.put("payment", {"op": "confirm"}, dedupe_key="order-1:confirm"),
            box.put("payment", {"op": "confirm", "again": True}, dedupe_key="order-1:confirm"),
        )
        assert first == second
        other_stream = await box.put("sale", {"op": "confirm"}, dedupe_key="order-1:confirm")
        assert other_stream != first
        assert await box.depth("payment") == 1
        (rec,) = await box.claim("payment")
        assert rec.payload == {"op": "confirm"}
        assert rec.dedupe_key == "order-1:confirm"
        await box.ack([rec.id])
        assert await box.put("payment", {"op": "confirm"}, dedupe_key="order-1:confirm") == first
        assert await box.depth("payment") == 0


async def test_release_keeps_place_and_blocks_until_retry(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        a = await box.put("conversion", {"n": 1})
        await box.put("conversion", {"n": 2})
        (rec,) = await box.claim("conversion", limit=1)
        assert rec.id == a
        await box.release(a, "broker down", retry_at=clock.now + 10)
        assert await box.claim("conversion") == []  # the head waits for its retry: nobody overtakes
        clock.now += 10
        again = await box.claim("conversion")
        assert [r.payload["n"] for r in again] == [1, 2]
        assert again[0].attempts == 2 and again[1].attempts == 1


async def test_default_retry_uses_backoff(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        rid = await box.put("sale", {})
        await box.claim("sale")
        await box.release(rid, "timeout")
        assert await box.claim("sale") == []
        (stats,) = await box.stats()
        assert stats.waiting_retry == 1 and stats.in_flight == 0
        clock.now += 1.0  # first retry waits at most RETRY_BASE_S
        assert [r.id for r in await box.claim("sale")] == [rid]


async def test_lease_expiry_redelivers_then_dead_letters(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock, max_attempts=3) as box:
        rid = await box.put("coupon_push", {"user": "U1"})
        nxt = await box.put("coupon_push", {"user": "U2"})
        for attempt in (1, 2, 3):
            (rec,) = await box.claim("coupon_push", limit=1, lease=5)
            assert (rec.id, rec.attempts) == (rid, attempt)
            assert await box.claim("coupon_push") == []
            clock.now += 5.01  # the consumer "crashed": its lease runs out
        (rec,) = await box.claim("coupon_push", limit=1)
        assert rec.id == nxt
        (dead,) = await box.dead_letters()
        assert dead.id == rid and dead.attempts == 3 and "lease expired" in dead.reason
        (stats,) = await box.stats()
        assert (stats.stream, stats.depth, stats.dead) == ("coupon_push", 1, 1)


async def test_release_after_max_attempts_and_permanent_errors(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock, max_attempts=2) as box:
        a = await box.put("coupon_push", {"n": 1})
        b = await box.put("coupon_push", {"n": 2})
        await box.claim("coupon_push", limit=1)
        await box.release(a, "429 rate limited", retry_at=clock.now)
        await box.claim("coupon_push", limit=1)
        await box.release(a, "429 rate limited", retry_at=clock.now)
        (rec,) = await box.claim("coupon_push", limit=1)
        assert rec.id == b
        await box.release(b, "400 invalid user", permanent=True)
        letters = await box.dead_letters("coupon_push")
        assert [(d.id, d.attempts) for d in letters] == [(a, 2), (b, 1)]
        assert "gave up after 2 attempts: 429" in letters[0].reason
        assert letters[1].reason == "permanent error: 400 invalid user"
        assert await box.depth() == 0
        # An operator retries the first one: same id, fresh attempts, back at the head.
        assert await box.retry_dead(a)
        assert not await box.retry_dead(a)
        (back,) = await box.claim("coupon_push")
        assert (back.id, back.attempts, back.payload) == (a, 1, {"n": 1})


async def test_expired_telemetry_is_never_handed_out(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        await box.put("presence", {"n": 1}, durability=Durability.TELEMETRY, expires_at=clock.now + 5)
        keep = await box.put("presence", {"n": 2}, durability=Durability.TELEMETRY, expires_at=clock.now + 60)
        clock.now += 6
        assert [r.id for r in await box.claim("presence")] == [keep]
        assert await box.depth("presence") == 1


async def test_bad_input_is_refused_and_nothing_is_lost(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        with pytest.raises(InvalidRecordError, match="critical records never expire"):
            await box.put("payment", {}, expires_at=clock.now + 1)
        with pytest.raises(InvalidRecordError, match="not JSON-serialisable"):
            await box.put("payment", {"x": object()})
        with pytest.raises(InvalidRecordError, match="stream name"):
            await box.put("Bad Stream", {})
        with pytest.raises(InvalidRecordError, match="payload must be a dict"):
            await box.put("sale", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(InvalidRecordError, match="over 1048576 bytes"):
            await box.put("sale", {"blob": "x" * (1 << 20)})
        with pytest.raises(InvalidRecordError, match="dedupe_key"):
            await box.put("sale", {}, dedupe_key="")
        with pytest.raises(InvalidRecordError, match="claim limit"):
            await box.claim("sale", limit=0)
        assert await box.depth() == 0
        await box.put("sale", {"ok": True})
        assert await box.depth() == 1


async def test_group_commit_shares_transactions(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        writer = box._writer
        before = writer.batches
        ids = await asyncio.gather(*(box.put("sale", {"n": i}) for i in range(500)))
        assert len(set(ids)) == 500
        assert writer.batches - before < 50  # 500 puts, far fewer commits
        got = await box.claim("sale", limit=500)
        assert [r.payload["n"] for r in got] == list(range(500))
        before = writer.batches
        await asyncio.gather(*(box.ack([r.id]) for r in got))
        assert writer.batches - before < 50  # acks are group-committed too
        assert await box.depth() == 0


async def test_commit_sync_level_follows_durability(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        await box.put("presence", {}, durability=Durability.TELEMETRY, expires_at=clock.now + 60)
        assert box._writer._sync_full is False  # telemetry alone: synchronous=NORMAL
        await box.put("payment", {})
        assert box._writer._sync_full is True  # a critical record: synchronous=FULL
        assert await box.depth() == 2
        assert box._writer._sync_full is True  # a read leaves the level alone


async def test_closed_outbox_refuses_and_records_persist(db: Path, clock: FakeClock) -> None:
    box = await Outbox.open(db, prepare=prepare_state_db, clock=clock)
    rid = await box.put("sale", {"n": 1})
    await box.claim("sale")  # leased by this process...
    await box.close()
    await box.close()
    with pytest.raises(OutboxClosedError):
        await box.put("sale", {"n": 2})
    async with await Outbox.open(db, clock=clock) as again:
        # ...and the next process ends that lease at open instead of waiting it out.
        assert [r.id for r in await again.claim("sale")] == [rid]


async def test_open_without_tables_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="no such state database"):
        await Outbox.open(tmp_path / "missing.db")
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    with pytest.raises(OutboxError, match="no outbox tables"):
        await Outbox.open(plain)


async def test_health_callback_reports_green(db: Path) -> None:
    seen: list[tuple[OutboxCondition, str]] = []
    async with await Outbox.open(db, prepare=prepare_state_db, on_health=lambda level, detail: seen.append((level, detail))) as box:
        await box.put("sale", {})
    assert seen == [(OutboxCondition.OK, "ok")]


def test_migration_on_empty_db_and_from_0002(tmp_path: Path) -> None:
    for start in (None, "0002_agent_runs"):
        engine = open_engine(tmp_path / f"{start}.db")
        if start is not None:
            migrate(engine, start)
            assert "0100_outbox" not in current_heads(engine)
        migrate(engine)
        assert "0100_outbox" in current_heads(engine)
        assert current_heads(engine) == script_heads()
        engine.dispose()
        conn = sqlite3.connect(tmp_path / f"{start}.db")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        conn.close()
        assert {"outbox", "outbox_keys", "outbox_dead"} <= tables


async def test_daemon_opens_outbox_and_closes_it_after_components(config_file: Path) -> None:
    from agent.commands import load_or_exit
    from agent.daemon import run_agent

    config = load_or_exit(config_file)
    seen: dict[str, Outbox] = {}

    def started(ctx: object, supervisor: object) -> None:
        from agent.context import AgentContext
        from agent.supervisor import Supervisor

        assert isinstance(ctx, AgentContext) and isinstance(supervisor, Supervisor)
        seen["outbox"] = ctx.services["outbox"]
        assert ctx.health.get("outbox") is not None
        supervisor.stop()

    assert await run_agent(config, on_started=started) == 0
    with pytest.raises(OutboxClosedError):
        await seen["outbox"].put("sale", {})


async def test_maintain_forgets_old_dedupe_keys_and_drops_expired(db: Path, clock: FakeClock) -> None:
    from offline_queue._store import KEY_RETENTION_S

    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        acked = await box.put("payment", {"n": 1}, dedupe_key="k-acked")
        kept = await box.put("payment", {"n": 2}, dedupe_key="k-live")
        await box.put("presence", {}, durability=Durability.TELEMETRY, expires_at=clock.now + 1)
        (rec, _) = await box.claim("payment")
        await box.ack([rec.id])
        clock.now += KEY_RETENTION_S - 1
        await box.maintain()
        assert await box.depth("presence") == 0
        assert await box.put("payment", {"n": 1}, dedupe_key="k-acked") == acked  # still remembered
        clock.now += 2
        await box.maintain()
        assert await box.put("payment", {"n": 1}, dedupe_key="k-acked") > kept  # forgotten: a new record
        assert await box.put("payment", {"n": 2}, dedupe_key="k-live") == kept  # its record is still queued


async def test_maintain_drops_week_old_telemetry_dead_letters_only(db: Path, clock: FakeClock) -> None:
    from offline_queue._store import KEY_RETENTION_S

    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        tel = await box.put("presence", {}, durability=Durability.TELEMETRY)
        crit = await box.put("payment", {})
        await box.release(tel, "bad", permanent=True)
        await box.release(crit, "bad", permanent=True)
        clock.now += KEY_RETENTION_S + 1
        await box.maintain()
        assert [d.id for d in await box.dead_letters()] == [crit]


async def test_components_can_still_put_while_they_stop(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.daemon
    from agent.commands import load_or_exit
    from agent.context import AgentContext
    from agent.daemon import run_agent
    from base.health import Level as HealthLevel

    class Finisher:
        """A component whose `finally` records one last sale when it is cancelled at shutdown."""

        name = "finisher"

        def __init__(self, ctx: AgentContext) -> None:
            self.ctx = ctx

        async def run(self) -> None:
            self.ctx.health.set(self.name, HealthLevel.GREEN, "waiting")
            try:
                await asyncio.Event().wait()
            finally:
                await self.ctx.services["outbox"].put("sale", {"last": True})

    monkeypatch.setattr(agent.daemon, "build_components", lambda ctx: [Finisher(ctx)])
    config = load_or_exit(config_file)

    def started(ctx: object, supervisor: object) -> None:
        asyncio.get_running_loop().call_later(0.2, supervisor.stop)  # type: ignore[attr-defined]

    assert await run_agent(config, on_started=started) == 0
    async with await Outbox.open(config.db_path) as box:
        assert [r.payload for r in await box.claim("sale")] == [{"last": True}]


async def test_on_stored_wakes_a_consumer_for_new_records_only(db: Path, clock: FakeClock) -> None:
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        calls: list[int] = []
        unsubscribe = box.on_stored(lambda: calls.append(1))
        await box.put("sale", {"n": 1}, dedupe_key="k1")
        await asyncio.sleep(0)  # the writer's callbacks run on the loop
        assert calls == [1]
        await box.put("sale", {"n": 1}, dedupe_key="k1")  # deduplicated: nothing new
        (record,) = await box.claim("sale")
        await box.ack([record.id])
        await asyncio.sleep(0)
        assert calls == [1]
        unsubscribe()
        unsubscribe()  # twice is harmless
        await box.put("sale", {"n": 2})
        await asyncio.sleep(0)
        assert calls == [1]


class _Refused(Exception):
    """A transaction body's own refusal (like the journal's DuplicateOrder)."""


async def test_another_rooms_transactions_share_the_writers_group_commit(db: Path, clock: FakeClock) -> None:
    """Bodies queued together commit together with the outbox's puts; a body's own exception
    reaches its caller unchanged and fails neither its neighbours nor the outbox's health."""
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        await box.transaction(lambda conn: conn.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY)"))
        batches = box._writer.batches

        def note(n: int) -> Callable[[sqlite3.Connection], int]:
            def body(conn: sqlite3.Connection) -> int:
                conn.execute("INSERT INTO notes (n) VALUES (?)", (n,))
                return n

            return body

        def refuse(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO notes (n) VALUES (99)")
            raise _Refused("no")

        results = await asyncio.gather(
            *(box.transaction(note(n)) for n in range(5)),
            box.put("sale", {"n": 1}),
            box.transaction(refuse),
            return_exceptions=True,
        )
        assert results[:5] == [0, 1, 2, 3, 4]
        assert isinstance(results[6], _Refused)
        # one batch failed on the refusal, then each operation alone: 1 + 7, not 7 + 7
        assert box._writer.batches - batches <= 8
        rows = await box.transaction(lambda conn: [n for (n,) in conn.execute("SELECT n FROM notes")])
        assert rows == [0, 1, 2, 3, 4]  # the refused body's insert was rolled back
        assert await box.depth("sale") == 1
        assert box._health is not None and box._health[0] is OutboxCondition.OK

        together = box._writer.batches
        await asyncio.gather(*(box.transaction(note(n)) for n in range(10, 20)))
        assert box._writer.batches - together < 10  # queued while one committed: they shared commits


async def test_a_transaction_body_sees_sqlite_errors_as_they_are(db: Path, clock: FakeClock) -> None:
    """A broken constraint is the body's business; an operational error is the file's (health)."""
    async with await Outbox.open(db, prepare=prepare_state_db, clock=clock) as box:
        await box.transaction(lambda conn: conn.execute("CREATE TABLE keys (k TEXT PRIMARY KEY)"))
        await box.transaction(lambda conn: conn.execute("INSERT INTO keys VALUES ('a')"))
        with pytest.raises(sqlite3.IntegrityError):
            await box.transaction(lambda conn: conn.execute("INSERT INTO keys VALUES ('a')"))
        await asyncio.sleep(0)
        assert box._health is not None and box._health[0] is OutboxCondition.OK
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await box.transaction(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"))
        await asyncio.sleep(0)
        assert box._health is not None and box._health[0] is OutboxCondition.WRITE_FAILED
    with pytest.raises(OutboxClosedError):
        await box.transaction(lambda conn: None)
