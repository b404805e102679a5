"""The floor of this design: the least a counter agent can do per sale, measured beside the daemon.

A minimal aiohttp server that takes the same POS request (`POST /v1/payments` with the bearer
token), journals one row per sale in SQLite (WAL, synchronous=FULL, committed before it answers,
on one writer thread), answers `GET /v1/payments/{order_id}` and `/status.json`, and announces
each sale to a display client the way the web driver does (an SSE `screen` event, then a fixed
`/screen.png`). No LINE Pay call, no rendering, no outbox, no MQTT: what is left is Python,
aiohttp on uvloop (as the daemon runs) and one durable write, the cost nothing in the daemon
can go below.

Usage: python bench/_floor_server.py --port P --db PATH --token T   (stops on SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web


def _tiny_png() -> bytes:
    """A valid 1x1 white PNG (the floor's 'screen')."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class Floor:
    def __init__(self, db: Path, token: str) -> None:
        self._token = f"Bearer {token}"
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floor-journal")
        self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sales (order_id TEXT PRIMARY KEY, amount INTEGER NOT NULL,"
            " method TEXT NOT NULL, at REAL NOT NULL)"
        )
        self._version = 0
        self._clients: set[asyncio.Queue[int]] = set()
        self._png = _tiny_png()

    def _journal_blocking(self, order_id: str, amount: int, method: str) -> bool:
        try:
            self._db.execute(
                "INSERT INTO sales (order_id, amount, method, at) VALUES (?, ?, ?, ?)",
                (order_id, amount, method, time.time()),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def _lookup_blocking(self, order_id: str) -> int | None:
        row = self._db.execute("SELECT amount FROM sales WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else int(row[0])

    async def create(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self._token:
            return web.json_response({"error": "unauthorized"}, status=401)
        body: dict[str, Any] = await request.json()
        order_id, amount, method = str(body["order_id"]), int(body["amount"]), str(body["method"])
        loop = asyncio.get_running_loop()
        created = await loop.run_in_executor(self._writer, self._journal_blocking, order_id, amount, method)
        self._version += 1
        for queue in list(self._clients):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(self._version)
        view = {"order_id": order_id, "status": "paid", "version": 1, "amount": amount}
        return web.json_response(view, status=201 if created else 200)

    async def read(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        loop = asyncio.get_running_loop()
        amount = await loop.run_in_executor(self._writer, self._lookup_blocking, order_id)
        if amount is None:
            return web.json_response({"error": "unknown_order"}, status=404)
        return web.json_response({"order_id": order_id, "status": "paid", "version": 1, "amount": amount})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"overall": "green", "sales_seen": self._version})

    async def screen(self, request: web.Request) -> web.Response:
        return web.Response(body=self._png, content_type="image/png")

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        self._clients.add(queue)
        try:
            while True:
                version = await queue.get()
                data = json.dumps({"version": version, "epoch": "floor"})
                await response.write(f"event: screen\ndata: {data}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            self._clients.discard(queue)
        return response

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    floor = Floor(args.db, args.token)
    app = web.Application()
    app.router.add_post("/v1/payments", floor.create)
    app.router.add_get("/v1/payments/{order_id}", floor.read)
    app.router.add_get("/status.json", floor.status)
    app.router.add_get("/screen.png", floor.screen)
    app.router.add_get("/events", floor.events)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    floor.close()


if __name__ == "__main__":
    import uvloop  # the daemon's loop too (agent/commands/run.py): the floor of the same design

    uvloop.run(main())
