"""Durability read back from SQLite itself: the daemon's connections that write are in WAL mode with
`synchronous=FULL` when they commit a payment or a critical outbox record.

The agent runs in-process (`run_agent`, the daemon's own wiring) against the LINE Pay emulator; a
hook on the daemon's state-DB pool asks SQLite, on the very connection and at the moment it writes
the `payments` table, for `PRAGMA synchronous` and `PRAGMA journal_mode`. The outbox's level is read
on its writer thread's connection right after a put committed (a read keeps the last batch's level).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import parse_config
from agent.context import AgentContext
from agent.daemon import run_agent
from agent.supervisor import Supervisor
from emulators.linepay import EmulatorServer
from offline_queue import Durability, Outbox
from tests.integration.payments.conftest import CHANNEL_ID, CHANNEL_SECRET

TOKEN = "durability-token"
FULL, NORMAL = 2, 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _read_pragmas(box: Outbox) -> tuple[int, str]:
    """Ask the outbox writer's own connection, on its thread, with a read that keeps its sync level."""

    def read(store: Any) -> tuple[int, str]:
        (sync,) = store.conn.execute("PRAGMA synchronous").fetchone()
        (mode,) = store.conn.execute("PRAGMA journal_mode").fetchone()
        return int(sync), str(mode)

    result: tuple[int, str] = await box._writer.submit(read, full=False, write=False)
    return result


async def test_the_connections_that_write_are_wal_and_synchronous_full(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    port = _free_port()
    config = parse_config(
        {
            "device": {"store_id": "s1", "device_id": "c1"},
            "storage": {"state_dir": str(tmp_path / "state")},
            "pos": {"listen": f"127.0.0.1:{port}", "token": TOKEN},
            "linepay": {"api_base": emulator.url, "channel_id": CHANNEL_ID, "channel_secret": CHANNEL_SECRET},
            "mqtt": {"enabled": False},
            "ble": {"enabled": False},
        },
        environ={},
    )
    started: asyncio.Future[tuple[AgentContext, Supervisor]] = asyncio.get_running_loop().create_future()
    writes: list[tuple[str, int, str]] = []  # (statement, synchronous, journal_mode) per payments write
    on_writer: list[str] = []  # the payments writes made on the outbox writer's connection

    def tracer(conn: sqlite3.Connection, seen: list[str] | None = None) -> Callable[[str], None]:
        """SQLite's own trace of `conn`'s payments writes, with the pragmas it has now."""
        (sync,) = conn.execute("PRAGMA synchronous").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()

        def trace(statement: str) -> None:
            verb = statement.lstrip().split(" ", 1)[0].upper()
            if verb in ("INSERT", "UPDATE") and "payments" in statement.split("(", 1)[0]:
                writes.append((verb, int(sync), str(mode)))
                if seen is not None:
                    seen.append(verb)

        return trace

    def on_started(ctx: AgentContext, supervisor: Supervisor) -> None:
        # The journal writes plain SQL, in the daemon on the outbox writer's connection (one
        # writer for the file) and otherwise on the pool's: both are traced, each statement with
        # the pragmas its connection had when the transaction ran.
        checkout = ctx.db._checkout

        def _checkout() -> sqlite3.Connection:
            dbapi = checkout()
            dbapi.set_trace_callback(None)
            dbapi.set_trace_callback(tracer(dbapi))
            return dbapi

        ctx.db._checkout = _checkout  # type: ignore[method-assign]
        writer = ctx.services["outbox"]._writer
        submit = writer.submit

        def traced_submit(fn: Callable[[Any], Any], **kwargs: Any) -> asyncio.Future[Any]:
            def run(store: Any) -> Any:  # on the writer's thread, inside its transaction
                store.conn.set_trace_callback(tracer(store.conn, on_writer))
                try:
                    return fn(store)
                finally:
                    store.conn.set_trace_callback(None)

            return submit(run, **kwargs)

        writer.submit = traced_submit
        started.set_result((ctx, supervisor))

    agent = asyncio.create_task(run_agent(config, on_started=on_started))
    try:
        ctx, supervisor = await asyncio.wait_for(asyncio.shield(started), timeout=60)
        box = ctx.services["outbox"]
        assert isinstance(box, Outbox)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        key = emulator.state.issue_key(time.time())
        body = {
            "order_id": "D1",
            "amount": 90,
            "currency": "TWD",
            "product_name": "tea",
            "method": "scan_code",
        }
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            deadline = time.monotonic() + 60
            while True:  # the POS listener starts with its component, just after on_started
                try:
                    async with http.get(url + "/openapi.json") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "POS API never came up"
                await asyncio.sleep(0.1)
            async with http.post(
                url + "/v1/payments", json={**body, "one_time_key": key}, headers=headers
            ) as r:
                assert r.status == 201, await r.text()
            deadline = time.monotonic() + 30
            while True:
                async with http.get(url + "/v1/payments/D1?wait=2", headers=headers) as r:
                    view = await r.json()
                if view["status"] == "paid":
                    break
                assert time.monotonic() < deadline, view
        assert writes, "no payments write seen on the daemon's state DB"
        assert {verb for verb, _, _ in writes} == {"INSERT", "UPDATE"}
        assert set(on_writer) == {"INSERT", "UPDATE"}  # the journal writes on the file's one writer
        assert all((sync, mode) == (FULL, "wal") for _, sync, mode in writes), writes

        await box.put("crit", {"n": 1})
        assert await _read_pragmas(box) == (FULL, "wal")
        # The reading is live, not a constant: a telemetry-only batch commits at NORMAL ...
        await box.put("presence", {"n": 1}, durability=Durability.TELEMETRY, expires_at=time.time() + 60)
        assert await _read_pragmas(box) == (NORMAL, "wal")
        # ... and the next critical put is back at FULL.
        await box.put("crit", {"n": 2})
        assert await _read_pragmas(box) == (FULL, "wal")
        supervisor.stop()
        assert await asyncio.wait_for(agent, timeout=30) == 0
    finally:
        if not agent.done():
            agent.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await agent
