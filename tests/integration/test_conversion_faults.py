"""Issue 14, item 1, for the conversion consumer: one bad relayed event never stops the binding
messages behind it, and a transient fault is retried until it clears. Real SQLite, real outbox,
the sync downlink's own `accept_line_event`."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import LINE_INBOX_STREAM, DownlinkInbox, Envelope, accept_line_event
from base.statedb import StateDB
from emulators.messaging.webhooks import new_user_id, text_message_event
from membership.binding import URL_PROMPT, issue_binding
from membership.conversion import ConversionConsumer, SaleFacts
from offline_queue import FailureKind, Outbox, classify
from tests.integration.test_conversion import KEY, NOW, Sales, make_config


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    db = open_state_db(tmp_path / "state.db")
    migrate(db)
    yield db
    db.close()


@pytest.fixture
async def ctx(db: StateDB, tmp_path: Path) -> AsyncIterator[AgentContext]:
    ctx = AgentContext(config=make_config(), db=db, wall_clock=lambda: NOW + 60)
    outbox = await Outbox.open(tmp_path / "state.db")
    ctx.services["outbox"] = outbox
    ctx.services["sale_lookup"] = Sales({"A-1": SaleFacts(amount_twd=350), "B-2": SaleFacts(amount_twd=90)})
    ctx.services["downlink"] = DownlinkInbox()
    yield ctx
    await outbox.close()


def envelope(n: int, order: str, **event_fields: Any) -> Envelope:
    tok = issue_binding(make_config(key=KEY), order, NOW)[0]
    event = text_message_event(new_user_id(), URL_PROMPT + tok)
    event.update(event_fields)
    return Envelope(
        id=f"00000000-0000-4000-8000-{n:012d}",
        kind="line_event",
        ts="2026-11-23T00:00:00.000Z",
        seq=n,
        data={"event": event, "relay": {"received_at": NOW + 61}},
    )


def recorded(db: StateDB) -> list[str]:
    with db.transaction() as conn:
        return [order_id for (order_id,) in conn.execute("SELECT order_id FROM conversions")]


@contextlib.asynccontextmanager
async def running(consumer: ConversionConsumer) -> AsyncIterator[None]:
    task = asyncio.create_task(consumer.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Any, within_s: float = 20.0) -> None:
    async with asyncio.timeout(within_s):  # generous: the CI machine is shared and loaded
        while not await condition():  # noqa: ASYNC110 - polls a database
            await asyncio.sleep(0.05)


async def test_an_absurd_line_timestamp_is_dead_lettered_and_later_messages_go_on(
    ctx: AgentContext, db: StateDB
) -> None:
    """LINE's `timestamp` as a 400-digit number: float() overflows on every try. It used to
    turn health red and hold every later binding message, across restarts."""
    outbox: Outbox = ctx.services["outbox"]
    inbox: DownlinkInbox = ctx.services["downlink"]
    await accept_line_event(outbox, inbox, envelope(1, "A-1", timestamp=10**400))
    await accept_line_event(outbox, inbox, envelope(2, "B-2"))
    consumer = ConversionConsumer(ctx)
    async with running(consumer):

        async def drained() -> bool:
            return await outbox.depth(LINE_INBOX_STREAM) == 0

        await until(drained)
    assert recorded(db) == ["B-2"]
    [letter] = await outbox.dead_letters(LINE_INBOX_STREAM)
    assert letter.reason.startswith("permanent error: EventTimeError: event.timestamp is not a time")
    assert letter.payload["id"] == "00000000-0000-4000-8000-000000000001"
    health = ctx.health.get("conversion")
    assert health is not None and health.level == "amber"
    assert "dead-lettered" in health.detail and "shopedge queue dead-letters" in health.detail

    # a restart keeps it visible (amber) and stays free: the next message is recorded at once
    ctx.services["downlink"] = DownlinkInbox()
    await accept_line_event(outbox, ctx.services["downlink"], envelope(3, "C-3"))
    restarted = ConversionConsumer(ctx)
    async with running(restarted):

        async def c3() -> bool:
            return "C-3" in recorded(db)

        await until(c3)
        health = ctx.health.get("conversion")
        assert health is not None and health.level == "amber" and "1 binding message" in health.detail


class FlakySales:
    """The journal's sale lookup while the database is busy for the first `failures` calls."""

    def __init__(self, failures: int, exc: Exception) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    async def sale_facts(self, order_id: str) -> SaleFacts | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return SaleFacts(amount_twd=350)


async def test_a_busy_database_is_retried_red_until_it_clears(ctx: AgentContext, db: StateDB) -> None:
    """Transient: more failures than the repeat limit, yet never dead-lettered."""
    failures = 7
    ctx.services["sale_lookup"] = FlakySales(failures, sqlite3.OperationalError("database is locked"))
    outbox: Outbox = ctx.services["outbox"]
    levels: list[str] = []
    ctx.health.listen(lambda item: levels.append(str(item.level)) if item.name == "conversion" else None)
    await accept_line_event(outbox, ctx.services["downlink"], envelope(1, "A-1"))
    # retries are due at once (the outbox's backoff would make this test take minutes)
    consumer = ConversionConsumer(ctx, max_attempts=3)
    real_release = outbox.release

    async def release_now(record_id: int, error: str, **kw: Any) -> None:
        kw["retry_at"] = kw.get("retry_at") or 0.0
        await real_release(record_id, error, **kw)

    outbox.release = release_now  # type: ignore[method-assign]
    try:
        async with running(consumer):

            async def done() -> bool:
                return recorded(db) == ["A-1"]

            await until(done)
    finally:
        del outbox.release
    assert await outbox.dead_letters(LINE_INBOX_STREAM) == []
    assert "red" in levels and levels[-1] == "green"
    assert consumer.counts["recorded"] == 1


async def test_the_same_unknown_failure_repeated_is_dead_lettered(ctx: AgentContext, db: StateDB) -> None:
    class Broken(Exception):
        pass

    ctx.services["sale_lookup"] = FlakySales(10**6, Broken("journal says no"))
    outbox: Outbox = ctx.services["outbox"]
    await accept_line_event(outbox, ctx.services["downlink"], envelope(1, "A-1"))
    consumer = ConversionConsumer(ctx, max_attempts=2)
    async with running(consumer):

        async def dead() -> bool:
            return len(await outbox.dead_letters(LINE_INBOX_STREAM)) == 1

        await until(dead)
    [letter] = await outbox.dead_letters(LINE_INBOX_STREAM)
    assert letter.reason == "permanent error: failed the same way 2 times: Broken: journal says no"


@pytest.mark.parametrize(
    ("exc", "attempts", "kind", "dead"),
    [
        (OverflowError("int too large"), 1, FailureKind.PERMANENT, True),
        (KeyError("messages"), 1, FailureKind.PERMANENT, True),
        (sqlite3.OperationalError("database is locked"), 99, FailureKind.TRANSIENT, False),
        (TimeoutError(), 99, FailureKind.TRANSIENT, False),
        (ConnectionResetError(), 99, FailureKind.TRANSIENT, False),
        (RuntimeError("?"), 4, FailureKind.UNKNOWN, False),
        (RuntimeError("?"), 5, FailureKind.UNKNOWN, True),
    ],
)
def test_classify(exc: Exception, attempts: int, kind: FailureKind, dead: bool) -> None:
    failure = classify(exc, attempts)
    assert (failure.kind, failure.dead) == (kind, dead)


def test_classify_follows_causes_and_flags() -> None:
    class Wrapped(Exception):
        pass

    wrapped = Wrapped("db")
    wrapped.__cause__ = sqlite3.OperationalError("database is locked")
    assert classify(wrapped, 50).kind is FailureKind.TRANSIENT

    class Refused(Exception):
        permanent = True

    assert classify(Refused(), 1).dead


def test_first_rejections_of_one_reason_from_many_threads_all_count(tmp_path: Path) -> None:
    """Forged QR tokens arriving at once: each is counted, none fails on the counter's row.

    A read-then-insert counter lost this race (the second writer's read was stale, SQLite refused
    its write); the counter is one upsert now."""
    import threading

    from membership.conversion import Rejection, count_rejection_blocking, rejection_counts_blocking

    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    threads, errors = 8, []
    barrier = threading.Barrier(threads)

    def reject() -> None:
        try:
            barrier.wait(10)
            count_rejection_blocking(db, Rejection.BAD_SIGNATURE, NOW)
        except Exception as exc:  # collected: a lost count fails the test below
            errors.append(exc)

    workers = [threading.Thread(target=reject) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    db.close()
    assert errors == []
    assert rejection_counts_blocking(db)[Rejection.BAD_SIGNATURE.value] == threads
