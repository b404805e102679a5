"""The POS API and payment service end to end: real HTTP, real SQLite, the LINE Pay emulator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from emulators.linepay import EmulatorServer, Fault
from tests.integration.payments.harness import running


def scan(order_id: str, key: str, amount: int = 120) -> dict[str, object]:
    return {
        "order_id": order_id,
        "amount": amount,
        "currency": "TWD",
        "product_name": "拿鐵 latte",
        "method": "scan_code",
        "one_time_key": key,
    }


def qr(order_id: str, amount: int = 300) -> dict[str, object]:
    return {"order_id": order_id, "amount": amount, "currency": "TWD", "product_name": "便當", "method": "qr"}


async def test_scan_code_payment(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        key = emulator.state.issue_key(time.time())
        status, body = await h.post("/v1/payments", scan("A1", key))
        assert status == 201 and body["status"] in ("authorizing", "paid"), body
        body = await h.until("A1", "paid")
        charge = emulator.state.charges["A1"]
        assert body["transaction_id"] == charge.transaction_id and body["paid_amount"] == 120
        await h.display.last("PaidScreen")
        assert h.display.kinds() == ["WaitingScreen", "PaidScreen"]
        path, sent = emulator.state.bodies[-1]
        assert (
            path == "/v4/payments/oneTimeKeys/pay" and sent["orderId"] == "A1" and sent["oneTimeKey"] == key
        )
        assert "options" not in sent  # addFriends is undocumented for offline v4: off by default
        assert h.display.screens[-1].binding_url == "https://bind.example/A1"
        assert h.paid == [("A1", 120, "https://bind.example/A1")]  # funnel hook, once
        states = [payload["state"] for stream, payload, _ in h.outbox.records if payload["order_id"] == "A1"]
        assert states == ["created", "authorizing", "paid"]
        assert all(stream == "payment" for stream, _, _ in h.outbox.records)
        for _ in range(100):  # the payment's driver task finishes just after the answer
            if not h.service._cache:
                break
            await asyncio.sleep(0.02)
        assert h.service._cache == {}  # settled payments live in the journal, not in memory
        assert dict(h.service._locks) == {}  # nor their locks (one a sale would pile up for months)


async def test_qr_payment(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        status, body = await h.post("/v1/payments", qr("Q1"))
        assert status == 201 and body["status"] in ("created", "requested")
        body = await h.until("Q1", "requested")
        assert body["payment_url"].startswith(emulator.url) and len(body["access_token"]) == 12
        pay_screen = await h.display.last("PayScreen")
        assert type(pay_screen).__name__ == "PayScreen" and pay_screen.qr_url == body["payment_url"]
        await asyncio.sleep(0.1)
        assert emulator.state.check_request(body["transaction_id"], time.time()) == "0000"
        emulator.state.approve(body["transaction_id"], time.time())
        body = await h.until("Q1", "paid")
        assert emulator.state.charges["Q1"].amount == 300
        request_body = next(b for p, b in emulator.state.bodies if p == "/v3/payments/request")
        assert request_body["redirectUrls"]["confirmUrlType"] == "NONE"
        assert request_body["options"]["familyService"]["addFriends"][0]["idList"] == ["@shopedge"]
        await h.display.last("PaidScreen")
        assert h.display.kinds()[-2:] == ["WaitingScreen", "PaidScreen"]


async def test_scanner_feeds_the_waiting_sale(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        body = scan("S1", "x")
        del body["one_time_key"]
        status, created = await h.post("/v1/payments", body)
        assert status == 201 and created["status"] == "created"
        await h.service.key_scanned(emulator.state.issue_key(time.time()))
        await h.until("S1", "paid")


async def test_cancel_unpaid_qr_and_a_late_approval_charges_nobody(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    async with running(tmp_path, emulator.url) as h:
        await h.post("/v1/payments", qr("Q2"))
        body = await h.until("Q2", "requested")
        status, body = await h.post("/v1/payments/Q2/cancel")
        assert status == 200 and body["status"] == "cancelled"
        assert (await h.display.last("IdleScreen")).store_name == "Test Shop"
        emulator.state.approve(body["transaction_id"], time.time())
        await asyncio.sleep(0.3)
        assert "Q2" not in emulator.state.charges
        status, again = await h.post("/v1/payments/Q2/cancel")
        assert status == 200 and again["status"] == "cancelled"


async def test_refunds_partial_full_and_idempotent(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        await h.post("/v1/payments", scan("R1", emulator.state.issue_key(time.time()), amount=100))
        await h.until("R1", "paid")
        key = {"Idempotency-Key": "refund-r1-a"}
        status, body = await h.post("/v1/payments/R1/refund", {"amount": 30}, headers=key)
        assert status == 200
        body = await h.until("R1", "paid")
        assert body["refunded_amount"] == 30
        status, again = await h.post("/v1/payments/R1/refund", {"amount": 30}, headers=key)
        assert status == 200 and again["refunded_amount"] == 30  # replayed, not refunded twice
        status, conflict = await h.post("/v1/payments/R1/refund", {"amount": 31}, headers=key)
        assert status == 409 and conflict["error"] == "idempotency_conflict"
        status, too_much = await h.post("/v1/payments/R1/refund", {"amount": 71})
        assert status == 409 and too_much["error"] == "conflict"
        status, body = await h.post("/v1/payments/R1/cancel")  # a completed payment: refund the rest
        body = await h.until("R1", "refunded")
        assert body["refunded_amount"] == 100
        assert emulator.state.refund_log == [("R1", 30), ("R1", 70)]
        status, body = await h.post("/v1/payments/R1/refund", {})
        assert status == 409 and "already refunded" in body["message"]


async def test_qr_refund(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        await h.post("/v1/payments", qr("Q3", 50))
        body = await h.until("Q3", "requested")
        emulator.state.approve(body["transaction_id"], time.time())
        await h.until("Q3", "paid")
        await h.post("/v1/payments/Q3/refund", {})
        await h.until("Q3", "refunded")
        assert emulator.state.charges["Q3"].status == "REFUND"


@pytest.mark.parametrize(
    ("fault", "endpoint"),
    [
        ("timeout", "pay"),
        ("slow", "pay"),
        ("drop", "pay"),
        ("5xx", "pay"),
        ("timeout", "confirm"),
        ("drop", "confirm"),
    ],
)
async def test_outcome_unknown_after_charge_is_found_not_recharged(
    tmp_path: Path, emulator: EmulatorServer, fault: str, endpoint: str
) -> None:
    async with running(tmp_path, emulator.url, read=0.5) as h:
        emulator.state.faults.append(Fault(endpoint=endpoint, kind=fault, seconds=1.0))  # type: ignore[arg-type]
        if endpoint == "pay":
            await h.post("/v1/payments", scan("F1", emulator.state.issue_key(time.time())))
        else:
            await h.post("/v1/payments", qr("F1", 120))
            body = await h.until("F1", "requested")
            emulator.state.approve(body["transaction_id"], time.time())
        body = await h.until("F1", "unknown", "paid")
        if body["status"] == "unknown":
            assert body["message"] == "confirming payment, do not charge again"
            await h.display.last("WaitingScreen")
        body = await h.until("F1", "paid")
        assert body["transaction_id"] == emulator.state.charges["F1"].transaction_id
        assert emulator.state.charge_attempts.count("F1") == 1


async def test_5xx_before_the_charge_fails_after_settling(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url, read=0.5) as h:
        emulator.state.faults.append(Fault(endpoint="pay", kind="5xx", after_effect=False))
        await h.post("/v1/payments", scan("F2", emulator.state.issue_key(time.time())))
        body = await h.until("F2", "failed", within=20)
        assert body["error_code"] == "not_found" and "F2" not in emulator.state.charges
        # The till may try again with a new key: a new LINE order id, one charge.
        status, body = await h.post("/v1/payments", scan("F2", emulator.state.issue_key(time.time())))
        assert status == 201 and body["attempt_order_id"] == "F2.2"
        await h.until("F2", "paid")
        assert [oid for oid in emulator.state.charges if oid.startswith("F2")] == ["F2.2"]


async def test_refused_payment_then_retry(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        await h.post("/v1/payments", scan("L1", emulator.state.issue_key(time.time(), balance=10)))
        body = await h.until("L1", "failed")
        assert body["error_code"] == "1142"
        assert (await h.display.last("FailedScreen")).reason_en == "Insufficient balance"
        await h.post("/v1/payments", scan("L1", emulator.state.issue_key(time.time())))
        await h.until("L1", "paid")


async def test_amount_mismatch_is_refunded_and_failed(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        emulator.state.faults.append(Fault(endpoint="pay", kind="short", amount=20))
        await h.post("/v1/payments", scan("M1", emulator.state.issue_key(time.time()), amount=120))
        body = await h.until("M1", "failed")
        assert body["error_code"] == "mismatch"
        assert emulator.state.charges["M1"].status == "REFUND" and emulator.state.refund_log == [("M1", 100)]


async def test_refund_timeout_after_effect_applies_once(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url, read=0.5) as h:
        await h.post("/v1/payments", scan("T1", emulator.state.issue_key(time.time()), amount=80))
        await h.until("T1", "paid")
        emulator.state.faults.append(Fault(endpoint="refund_offline", kind="timeout", seconds=1.0))
        await h.post("/v1/payments/T1/refund", {"amount": 30})
        body = await h.until("T1", "paid", within=10)
        deadline = asyncio.get_running_loop().time() + 15
        while body["refunded_amount"] != 30:  # the refund settles after its timed-out call
            assert asyncio.get_running_loop().time() < deadline, f"refund never recorded: {body}"
            status, body = await h.get(f"/v1/payments/T1?wait=2&version={body['version']}")
            assert status == 200 and body["status"] == "paid", body
        assert emulator.state.refund_log == [("T1", 30)]


async def test_restart_reconciles_a_payment_cut_mid_call(tmp_path: Path, emulator: EmulatorServer) -> None:
    emulator.state.faults.append(Fault(endpoint="pay", kind="timeout", seconds=0.5))
    async with running(tmp_path, emulator.url, read=5.0) as h:
        await h.post("/v1/payments", scan("K1", emulator.state.issue_key(time.time())))
        await asyncio.sleep(0.2)  # the pay call is in flight: stop the service under it
        assert (await h.get("/v1/payments/K1"))[1]["status"] == "authorizing"
    async with running(tmp_path, emulator.url) as h:
        body = await h.until("K1", "paid")
        assert body["transaction_id"] == emulator.state.charges["K1"].transaction_id
        assert emulator.state.charge_attempts.count("K1") == 1


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"one_time_key": "12345678901234567"}, 422, "malformed_key"),
        ({"one_time_key": "12345678901234567a"}, 422, "malformed_key"),
        ({"one_time_key": 123456789012345678}, 422, "malformed_key"),
        ({"amount": 0}, 422, "invalid_amount"),
        ({"amount": -5}, 422, "invalid_amount"),
        ({"amount": 1.5}, 422, "invalid_amount"),
        ({"amount": "100"}, 422, "invalid_amount"),
        ({"amount": True}, 422, "invalid_amount"),
        ({"amount": 50_001}, 422, "amount_over_limit"),
        ({"currency": "USD"}, 422, "invalid_request"),
        ({"method": "cash"}, 422, "invalid_request"),
        ({"order_id": "a/b"}, 422, "invalid_request"),
        ({"order_id": "a.b"}, 422, "invalid_request"),
        ({"extra": 1}, 422, "invalid_request"),
    ],
)
async def test_bad_payment_requests(
    tmp_path: Path, emulator: EmulatorServer, change: dict[str, object], status: int, code: str
) -> None:
    async with running(tmp_path, emulator.url) as h:
        body = {**scan("B1", "123456789012345678"), **change}
        got, answer = await h.post("/v1/payments", body)
        assert (got, answer["error"]) == (status, code), answer
        assert answer["message"]
        assert (await h.get("/v1/payments/B1"))[0] == 404


async def test_protocol_errors(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        json_type = {"Content-Type": "application/json"}
        assert (await h.post("/v1/payments", raw=b"{not json", headers=json_type))[1][
            "error"
        ] == "malformed_json"
        status, body = await h.post("/v1/payments", scan("P1", "1" * 18), auth=False)
        assert (status, body["error"]) == (401, "unauthorized")
        status, body = await h.get("/v1/payments/nope")
        assert (status, body["error"]) == (404, "unknown_order")
        status, body = await h.get("/v1/payments/x?wait=abc")
        assert status == 400
        for odd in ("wait=nan", "wait=inf", "wait=61", "wait=-1"):
            assert (await h.get(f"/v1/payments/x?{odd}"))[0] == 400
        assert (await h.get("/v1/payments/x?wait=0&version=%C2%B2"))[0] == 404  # not a digit: ignored
        assert (await h.get("/v1/payments/x%0A"))[0] == 404
        status, body = await h.post("/v1/payments/nope/cancel")
        assert (status, body["error"]) == (404, "unknown_order")
        status, body = await h.post("/v1/payments", qr("P2") | {"one_time_key": "1" * 18})
        assert status == 422


async def test_idempotency_and_duplicates(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        key = emulator.state.issue_key(time.time())
        headers = {"Idempotency-Key": "till-42"}
        s1, b1 = await h.post("/v1/payments", scan("D1", key), headers=headers)
        s2, b2 = await h.post("/v1/payments", scan("D1", key), headers=headers)
        assert (s1, s2) == (201, 200) and b1["attempt_order_id"] == b2["attempt_order_id"]
        s3, b3 = await h.post("/v1/payments", scan("D1", key, amount=121), headers=headers)
        assert (s3, b3["error"]) == (409, "idempotency_conflict")
        s4, b4 = await h.post("/v1/payments", scan("D1", key, amount=999))
        assert (s4, b4["error"]) == (409, "duplicate_order")
        await h.until("D1", "paid")
        s5, b5 = await h.post("/v1/payments", scan("D1", emulator.state.issue_key(time.time())))
        assert s5 == 200 and b5["status"] == "paid"
        assert emulator.state.charge_attempts.count("D1") == 1


async def test_openapi_document(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h, h.http.get(h.url + "/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/v1/payments",
        "/v1/payments/{order_id}",
        "/v1/payments/{order_id}/cancel",
        "/v1/payments/{order_id}/refund",
    }
    create = doc["components"]["schemas"]["PaymentCreate"]
    assert create["properties"]["amount"]["maximum"] == 50_000
    assert "one_time_key" in create["properties"]


async def test_member_phone_is_kept_only_as_the_agent_wide_salted_hash(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    from membership.binding import phone_hash
    from tests.integration.payments.harness import PHONE_SALT

    async with running(tmp_path, emulator.url) as h:
        key = emulator.state.issue_key(time.time())
        status, _ = await h.post("/v1/payments", {**scan("P1", key), "member_phone": "+886912345678"})
        assert status == 201
        await h.until("P1", "paid")
        with h.engine.transaction() as conn:
            [(stored,)] = conn.execute("SELECT member_phone_hash FROM payments").fetchall()
        # The same hash the conversion computes for "0912-345-678": one scheme across the agent.
        assert stored == phone_hash("0912-345-678", PHONE_SALT)
        for name in ("shopedge.db", "shopedge.db-wal"):
            path = tmp_path / name
            assert not path.exists() or b"912345678" not in path.read_bytes()


async def test_a_live_sale_is_read_from_memory_and_a_settled_one_from_the_journal(
    tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A till's long poll asks on every change: while the attempt is live the service answers
    from what it wrote, and its answer is what the journal holds; once settled, the journal."""
    from pos_bridge.journal import Journal

    reads: list[str] = []
    real_latest = Journal.latest

    async def counting(self: Journal, order_id: str) -> object:
        reads.append(order_id)
        return await real_latest(self, order_id)

    monkeypatch.setattr(Journal, "latest", counting)
    async with running(tmp_path, emulator.url) as h:
        status, body = await h.post("/v1/payments", qr("M1"))
        assert status == 201
        body = await h.until("M1", "requested")
        reads.clear()
        for _ in range(5):
            status, live = await h.get("/v1/payments/M1")
            assert status == 200 and live["status"] == "requested"
        assert reads == []
        stored = await real_latest(h.service._journal, "M1")
        assert stored is not None and stored.version == live["version"]
        emulator.state.approve(body["transaction_id"], time.time())
        await h.until("M1", "paid")
        for _ in range(100):
            if not h.service._cache:
                break
            await asyncio.sleep(0.02)
        reads.clear()
        status, settled = await h.get("/v1/payments/M1")
        assert status == 200 and settled["status"] == "paid" and reads == ["M1"]
