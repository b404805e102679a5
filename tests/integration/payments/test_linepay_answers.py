"""Issue 14, item 4: LINE Pay answers seen in LINE's real sandbox, end to end (real HTTP, real
SQLite, the LINE Pay emulator): an offline check that says CANCEL (final) or AUTH_READY (keep
polling), an overcharge, the device headers on every offline call, addFriends behind its switch."""

from __future__ import annotations

import time
from pathlib import Path

from emulators.linepay import EmulatorServer, Fault
from tests.integration.payments.harness import running
from tests.integration.payments.test_pos_api import qr, scan


async def test_a_cancelled_order_fails_instead_of_staying_unknown(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    """LINE cancels the order; the pay answer is lost: the check says CANCEL and the sale is
    failed, nothing charged (before: `unknown`, checked forever)."""
    emulator.state.faults.append(Fault(endpoint="pay", kind="cancel"))
    emulator.state.faults.append(Fault(endpoint="pay", kind="timeout", seconds=1.0))
    async with running(tmp_path, emulator.url, read=0.5) as h:
        await h.post("/v1/payments", scan("C1", emulator.state.issue_key(time.time())))
        body = await h.until("C1", "failed", "paid", within=20)
        assert body["status"] == "failed" and body["error_code"] == "CANCEL", body
        assert "C1" not in emulator.state.charges and emulator.state.refund_log == []
        assert (await h.display.last("FailedScreen")).reason_en.startswith("LINE Pay cancelled")


async def test_auth_ready_keeps_polling_until_complete(tmp_path: Path, emulator: EmulatorServer) -> None:
    """AUTH_READY past the pay call's settle time is not "no such order": it is checked again."""
    emulator.state.faults.append(Fault(endpoint="pay", kind="auth_ready", seconds=3.0))
    emulator.state.faults.append(Fault(endpoint="pay", kind="timeout", seconds=1.0))
    async with running(tmp_path, emulator.url, read=0.5) as h:
        await h.post("/v1/payments", scan("R1", emulator.state.issue_key(time.time())))
        seen = await h.until("R1", "unknown", "paid", "failed")
        assert seen["status"] == "unknown", seen
        body = await h.until("R1", "paid", "failed", within=20)
        assert body["status"] == "paid" and body["paid_amount"] == 120, body
        assert body["transaction_id"] == emulator.state.charges["R1"].transaction_id


async def test_an_overcharge_is_refunded_in_full_and_failed(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        emulator.state.faults.append(Fault(endpoint="pay", kind="over", amount=30))
        await h.post("/v1/payments", scan("O1", emulator.state.issue_key(time.time()), amount=120))
        body = await h.until("O1", "failed")
        assert body["error_code"] == "mismatch" and body["paid_amount"] == 150, body
        assert body["refunded_amount"] == 150
        assert emulator.state.charges["O1"].status == "REFUND" and emulator.state.refund_log == [("O1", 150)]
        assert (await h.display.last("FailedScreen")).reason_en == "Amount mismatch: refunded"


async def test_device_headers_on_every_offline_call(tmp_path: Path, emulator: EmulatorServer) -> None:
    emulator.state.faults.append(Fault(endpoint="pay", kind="timeout", seconds=1.0))
    async with running(tmp_path, emulator.url, read=0.5) as h:
        await h.post("/v1/payments", scan("H1", emulator.state.issue_key(time.time()), amount=80))
        await h.until("H1", "paid", within=20)
        await h.post("/v1/payments/H1/refund", {"amount": 30})
        body = await h.until("H1", "paid")
        while body["refunded_amount"] != 30:
            body = await h.until("H1", "paid")
        await h.post("/v1/payments", qr("Q9"))
        await h.until("Q9", "requested")
    offline = [(path, dev) for path, dev in emulator.state.device_headers if path.startswith("/v4/")]
    paths = {path.rsplit("/", 1)[-1] for path, _ in offline}
    assert {"pay", "check", "payments", "refund"} <= paths, paths  # pay, check, details, refund
    for path, device in offline:
        assert device == {"X-LINE-MerchantDeviceProfileId": "c1", "X-LINE-MerchantDeviceType": "POS"}, path
    online = [dev for path, dev in emulator.state.device_headers if path.startswith("/v3/")]
    assert online and all(dev == {} for dev in online)  # documented for the offline API only


async def test_add_friends_offline_is_a_switch_and_sends_the_at(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    async with running(
        tmp_path, emulator.url, linepay={"add_friends_offline": True, "merchant_device_profile_id": "T-9"}
    ) as h:
        await h.post("/v1/payments", scan("F1", emulator.state.issue_key(time.time())))
        await h.until("F1", "paid")
    pays = [body for path, body in emulator.state.bodies if path == "/v4/payments/oneTimeKeys/pay"]
    assert pays[-1]["options"]["familyService"]["addFriends"] == [{"type": "lineAt", "idList": ["@shopedge"]}]
    assert emulator.state.device_headers[-1][1]["X-LINE-MerchantDeviceProfileId"] == "T-9"
