"""A payment service on a real SQLite file and a real POS API on 127.0.0.1, against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

from agent.config import ShopEdgeConfig, parse_config
from agent.db import migrate, open_state_db
from base.statedb import StateDB
from membership.binding import phone_hasher
from offline_queue import Outbox
from pos_bridge.api import create_pos_app
from pos_bridge.journal import Journal
from pos_bridge.linepay import LinePayClient
from pos_bridge.service import PaymentService
from tests.integration.payments.conftest import CHANNEL_ID, CHANNEL_SECRET

TOKEN = "test-pos-token-123"


@dataclass
class RecordingDisplay:
    """The display contract's `show`, recording every screen (and when) for assertions."""

    screens: list[Any] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def show(self, screen: Any) -> None:
        self.screens.append(screen)
        self.times.append(asyncio.get_running_loop().time())
        self.changed.set()

    def kinds(self) -> list[str]:
        return [type(s).__name__ for s in self.screens]

    async def last(self, kind: str, within: float = 5.0) -> Any:
        """The last screen, once it is a `kind` (the screen follows the journal write)."""
        deadline = asyncio.get_running_loop().time() + within
        while not self.screens or type(self.screens[-1]).__name__ != kind:
            assert asyncio.get_running_loop().time() < deadline, f"no {kind}: {self.kinds()}"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=0.1)
        return self.screens[-1]


@dataclass
class RecordingOutbox:
    records: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Any = None,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int:
        self.records.append((stream, payload, dedupe_key))
        return len(self.records)


PHONE_SALT = "test-phone-salt"


def make_config(
    state_dir: Path, linepay_url: str, *, read: float = 2.0, linepay: dict[str, Any] | None = None, **pos: Any
) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "s1", "device_id": "c1", "name": "Test Shop"},
            "storage": {"state_dir": str(state_dir)},
            "pos": {"listen": "127.0.0.1:8737", "token": TOKEN, "max_amount_twd": 50_000, **pos},
            "linepay": {
                "api_base": linepay_url,
                "channel_id": CHANNEL_ID,
                "channel_secret": CHANNEL_SECRET,
                **(linepay or {}),
            },
            "line": {"oa_basic_id": "@shopedge"},
            "binding": {"phone_salt": PHONE_SALT},
            "timeouts": {
                "linepay_connect": 1.0,
                "linepay_pay": read,
                "linepay_request": read,
                "linepay_check": read,
                "linepay_capture": read,
            },
        },
        environ={},
    )


async def fast_sleep(seconds: float) -> None:
    """Poll intervals at 1/20 speed: the emulator still sees every request."""
    await asyncio.sleep(seconds / 20)


@dataclass
class Harness:
    config: ShopEdgeConfig
    engine: StateDB
    service: PaymentService
    display: RecordingDisplay
    outbox: RecordingOutbox
    http: ClientSession
    url: str
    paid: list[tuple[str, int, str | None]]  # (order_id, paid amount, binding URL) per on_paid call

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        h = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
        h.update(headers or {})
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with self.http.post(self.url + path, headers=h, **kwargs) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return r.status, await r.json()

    async def until(self, order_id: str, *statuses: str, within: float = 15.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        status, body = await self.get(f"/v1/payments/{order_id}")
        while True:
            assert status == 200, body
            if body["status"] in statuses:
                return body  # type: ignore[no-any-return]
            assert asyncio.get_running_loop().time() < deadline, f"{order_id} stuck at {body}"
            status, body = await self.get(f"/v1/payments/{order_id}?wait=2&version={body['version']}")


async def _record(into: list[tuple[str, int, str | None]], payment: Any, url: str | None) -> None:
    into.append((payment.order_id, payment.paid_amount, url))


@contextlib.asynccontextmanager
async def running(
    state_dir: Path,
    linepay_url: str,
    *,
    read: float = 2.0,
    real_outbox: bool = False,
    health: Callable[[str, str], None] | None = None,
    linepay: dict[str, Any] | None = None,
) -> AsyncIterator[Harness]:
    """Start a service (reconciling what the journal holds) and its API; stop both on exit.

    `health(component, condition)` hears the journal ("journal": "ok"/"write_failed") and, with
    `real_outbox`, the outbox ("outbox": its `OutboxCondition`).
    """
    config = make_config(state_dir, linepay_url, read=read, linepay=linepay)
    engine = await asyncio.to_thread(open_state_db, config.db_path)
    await asyncio.to_thread(migrate, engine)
    display, outbox = RecordingDisplay(), RecordingOutbox()
    paid: list[tuple[str, int, str | None]] = []
    durable: Outbox | None = None
    if real_outbox:
        durable = await Outbox.open(
            config.db_path, on_health=(lambda c, _d: health("outbox", str(c))) if health else None
        )
    client = LinePayClient(config.linepay, config.timeouts, device_id=config.device.device_id)  # as wired
    journal_health: dict[str, Any] = {}
    if health is not None:
        journal_health["on_health"] = lambda ok, _d: health("journal", "ok" if ok else "write_failed")
    journal = Journal(
        engine, outbox=lambda: durable or outbox, clock=__import__("time").time, **journal_health
    )
    service = PaymentService(
        config=config,
        journal=journal,
        client=client,
        display=lambda: display,
        binding_url=lambda order_id: f"https://bind.example/{order_id}",
        phone_hash=phone_hasher(config.binding.phone_salt.get_secret_value()),
        on_paid=lambda payment, url: _record(paid, payment, url),
        sleep=fast_sleep,
    )
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    runner = web.AppRunner(create_pos_app(service, config))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with ClientSession() as http:
        try:
            yield Harness(config, engine, service, display, outbox, http, url, paid)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runner.cleanup()
            await client.close()
            if durable is not None:
                await durable.close()
            engine.close()
