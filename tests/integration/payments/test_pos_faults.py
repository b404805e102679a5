"""Faults nobody scripted, on the POS API (issue 14): hostile bodies, a really full disk (a
small tmpfs the test fills to the last byte), and Idempotency-Keys that look like each other.

Real HTTP, real SQLite on the full filesystem, the LINE Pay emulator; nothing mocked.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from emulators.linepay import EmulatorServer, Fault
from tests.integration.payments.harness import TOKEN, running
from tests.integration.payments.test_pos_api import scan
from tests.integration.small_disk import SmallDisk, small_disk

JSON = {"Content-Type": "application/json"}
__all__ = ["small_disk"]  # the fixture, imported to be used here


async def test_deeply_nested_or_odd_bodies_are_4xx_with_a_json_error(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    async with running(tmp_path, emulator.url) as h:
        for depth in (30_000, 600, 40):  # past the C decoder's recursion limit, and below it
            raw = b"[" * depth + b"]" * depth
            status, body = await h.post("/v1/payments", raw=raw, headers=JSON)
            assert (status, body["error"]) == (400, "malformed_json"), body
            assert "nested deeper than" in body["message"]
        deep_object = b'{"a":' * 5000 + b"1" + b"}" * 5000
        status, body = await h.post("/v1/payments/X/refund", raw=deep_object, headers=JSON)
        assert (status, body["error"]) == (400, "malformed_json"), body
        status, body = await h.post("/v1/payments", raw=b'{"amount": NaN}', headers=JSON)
        assert (status, body["error"]) == (400, "malformed_json") and "NaN" in body["message"]
        valid = json.dumps(scan("CT1", "1" * 18)).encode()
        for odd in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
            status, body = await h.post("/v1/payments", raw=valid, headers={"Content-Type": odd})
            assert (status, body["error"]) == (415, "unsupported_media_type"), body
            assert odd in body["message"]
        assert (await h.get("/v1/payments/CT1"))[0] == 404  # nothing was started
        status, body = await h.post("/v1/payments/nope/cancel")  # no body: no content type needed
        assert (status, body["error"]) == (404, "unknown_order")
        status, body = await h.post(
            "/v1/payments", raw=valid, headers={"Content-Type": "application/json; charset=utf-8"}
        )
        assert status == 201, body


async def test_payment_key_never_collides_with_a_refund_key(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        await h.post("/v1/payments", scan("K1", emulator.state.issue_key(time.time())))
        await h.until("K1", "paid")
        # A payment whose key is spelled like the old refund keys ("refund:" + K) ...
        k2 = scan("K2", emulator.state.issue_key(time.time()))
        status, body = await h.post("/v1/payments", k2, headers={"Idempotency-Key": "refund:R-77"})
        assert status == 201, body
        await h.until("K2", "paid")
        # ... and a refund of another order with key K are two requests, not a replay or a conflict.
        refund_key = {"Idempotency-Key": "R-77"}
        status, body = await h.post("/v1/payments/K1/refund", {"amount": 20}, headers=refund_key)
        assert status == 200 and body["order_id"] == "K1" and body["status"] == "refunding", body
        await h.until("K1", "paid")
        assert (await h.get("/v1/payments/K1"))[1]["refunded_amount"] == 20
        # The same key replayed in each scope still finds its own first request.
        status, again = await h.post("/v1/payments/K1/refund", {"amount": 20}, headers=refund_key)
        assert status == 200 and again["refunded_amount"] == 20
        status, again = await h.post("/v1/payments", k2, headers={"Idempotency-Key": "refund:R-77"})
        assert status == 200 and again["order_id"] == "K2"


async def test_full_disk_is_a_json_503_health_red_until_a_write_commits(
    small_disk: SmallDisk, emulator: EmulatorServer
) -> None:
    health: list[tuple[str, str]] = []
    async with running(
        small_disk.root, emulator.url, real_outbox=True, health=lambda c, s: health.append((c, s))
    ) as h:
        status, _ = await h.post("/v1/payments", scan("D1", emulator.state.issue_key(time.time())))
        assert status == 201
        await h.until("D1", "paid")
        small_disk.fill()
        async with h.http.post(
            h.url + "/v1/payments",
            json=scan("D2", emulator.state.issue_key(time.time())),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"].isdigit()
            body = await response.json()
        assert body["error"] == "storage_unavailable" and "storage" in body["message"], body
        assert ("journal", "write_failed") in health
        assert (await h.get("/v1/payments/D1"))[1]["status"] == "paid"  # reads still answer
        small_disk.free()
        status, body = await h.post("/v1/payments", scan("D2", emulator.state.issue_key(time.time())))
        assert status == 201, body
        await h.until("D2", "paid")
        assert ("journal", "ok") in health[health.index(("journal", "write_failed")) :]


async def test_sale_charged_while_the_disk_fills_is_paid_once_it_has_space_without_restart(
    small_disk: SmallDisk, emulator: EmulatorServer
) -> None:
    async with running(small_disk.root, emulator.url, real_outbox=True) as h:
        emulator.state.faults.append(Fault(endpoint="pay", kind="delay", seconds=1.0))
        status, body = await h.post("/v1/payments", scan("F1", emulator.state.issue_key(time.time())))
        assert status == 201 and body["status"] == "authorizing", body
        small_disk.fill()  # LINE Pay charges during the delay; journaling "paid" now fails
        for _ in range(100):
            if "F1" in emulator.state.charges:
                break
            await asyncio.sleep(0.05)
        assert "F1" in emulator.state.charges
        await asyncio.sleep(1.5)
        assert (await h.get("/v1/payments/F1"))[1]["status"] in ("authorizing", "unknown")
        small_disk.free()
        body = await h.until("F1", "paid", within=20)
        assert body["paid_amount"] == 120
        assert len([c for c in emulator.state.charges if c.startswith("F1")]) == 1  # charged once
