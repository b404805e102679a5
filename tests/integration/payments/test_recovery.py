"""Recovery paths: LINE Pay unreachable while confirming, the outbox repaired after a crash,
and the scanner component feeding the waiting sale."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.wiring.pos import ScannerFeed
from emulators.linepay import EmulatorServer, Fault
from pos_bridge.journal import Journal
from pos_bridge.payment_flow import Method, Payment, State
from tests.integration.payments.harness import make_config, running


async def test_network_down_while_confirming_stays_unknown_then_pays(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    async with running(tmp_path, emulator.url, read=0.5) as h:
        emulator.state.faults.append(Fault(endpoint="pay", kind="timeout", seconds=1.0))  # charged, no answer
        emulator.state.faults.append(Fault(endpoint="check", kind="5xx", after_effect=False, count=3))
        emulator.state.faults.append(Fault(endpoint="check", kind="drop", after_effect=False, count=2))
        body = {
            "order_id": "N1",
            "amount": 70,
            "currency": "TWD",
            "product_name": "x",
            "method": "scan_code",
            "one_time_key": emulator.state.issue_key(time.time()),
        }
        await h.post("/v1/payments", body)
        unknown = await h.until("N1", "unknown")
        assert unknown["message"] == "confirming payment, do not charge again"
        status, refused = await h.post("/v1/payments/N1/cancel")
        assert status == 409 and "do not charge again" in refused["message"]
        paid = await h.until("N1", "paid", within=30)
        assert paid["transaction_id"] == emulator.state.charges["N1"].transaction_id
        assert not emulator.state.faults  # every injected check failure was met and retried


class FlakyOutbox:
    def __init__(self) -> None:
        self.fail = True
        self.keys: list[str | None] = []

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Any = None,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int:
        if self.fail:
            raise OSError("disk full")
        self.keys.append(dedupe_key)
        return len(self.keys)


def _draft(order_id: str) -> Payment:
    return Payment(
        order_id=order_id,
        line_order_id=order_id,
        method=Method.QR,
        amount=5,
        currency="TWD",
        product_name="x",
        state=State.CREATED,
        created_at=time.time(),
    )


async def test_outbox_gap_is_repaired_at_start(tmp_path: Path) -> None:
    engine = await asyncio.to_thread(open_state_db, tmp_path / "s.db")
    await asyncio.to_thread(migrate, engine)
    outbox = FlakyOutbox()
    journal = Journal(engine, outbox=lambda: outbox, clock=time.time)
    draft = _draft("O1")
    created = await journal.create(draft)  # the journal row is written even though the outbox fails
    assert (await journal.latest("O1")) == created and outbox.keys == []
    outbox.fail = False
    assert await journal.flush_outbox() == 1
    assert outbox.keys == ["payment:O1:0"]
    assert await journal.flush_outbox() == 0
    engine.close()


async def test_scanner_component_feeds_the_waiting_sale(tmp_path: Path, emulator: EmulatorServer) -> None:
    key = emulator.state.issue_key(time.time())
    scans = tmp_path / "scans.txt"
    scans.write_text(f"4710088432123\n{key}\n", encoding="utf-8")  # a product barcode, then My Code
    async with running(tmp_path, emulator.url) as h:
        body = {
            "order_id": "SC1",
            "amount": 55,
            "currency": "TWD",
            "product_name": "x",
            "method": "scan_code",
        }
        assert (await h.post("/v1/payments", body))[0] == 201
        config = make_config(tmp_path, emulator.url, scanner="replay", scanner_replay_file=str(scans))
        ctx = AgentContext(config=config, db=h.engine, services={"payments": h.service})
        feed = asyncio.create_task(ScannerFeed(ctx).run())
        try:
            paid = await h.until("SC1", "paid", within=20)
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        assert paid["paid_amount"] == 55 and emulator.state.keys[key].used


async def test_every_journal_entry_reaches_the_real_outbox(tmp_path: Path, emulator: EmulatorServer) -> None:
    from offline_queue import Outbox

    async with running(tmp_path, emulator.url, real_outbox=True) as h:
        body = {
            "order_id": "OB1",
            "amount": 30,
            "currency": "TWD",
            "product_name": "x",
            "method": "scan_code",
            "one_time_key": emulator.state.issue_key(time.time()),
        }
        await h.post("/v1/payments", body)
        paid = await h.until("OB1", "paid")
    outbox = await Outbox.open(h.config.db_path)
    try:
        records = await outbox.claim("payment", limit=10)
        assert [r.payload["state"] for r in records] == ["created", "authorizing", "paid"]
        assert [r.dedupe_key for r in records] == [f"payment:OB1:{v}" for v in range(paid["version"] + 1)]
        assert records[-1].payload["transaction_id"] == paid["transaction_id"]
        assert "payment_url" not in records[-1].payload
    finally:
        await outbox.close()


async def test_the_outboxed_mark_is_off_the_sales_path_and_settles(tmp_path: Path) -> None:
    """A state change waits for the outbox copy, not for the mark that spares the next start a
    re-send; the mark lands soon after, and a flush waits for it before it counts."""
    engine = await asyncio.to_thread(open_state_db, tmp_path / "s.db")
    await asyncio.to_thread(migrate, engine)
    outbox = FlakyOutbox()
    outbox.fail = False
    journal = Journal(engine, outbox=lambda: outbox, clock=time.time)
    written: list[tuple[str, int]] = []
    release = threading.Event()
    real_mark = journal._mark_outboxed_body

    def slow_mark(conn: sqlite3.Connection, marks: list[tuple[str, int]]) -> None:
        release.wait(5)
        real_mark(conn, marks)
        written.extend(marks)

    journal._mark_outboxed_body = slow_mark  # type: ignore[method-assign]
    draft = _draft("K1")
    created = await asyncio.wait_for(journal.create(draft), timeout=2)
    assert outbox.keys == ["payment:K1:0"]  # the outbox copy: before create returned
    assert written == []  # the mark: still waiting, and create did not wait for it
    release.set()
    assert await journal.flush_outbox() == 0  # waited for the mark, then found nothing unsent
    assert written == [(created.line_order_id, created.version)]
    engine.close()
