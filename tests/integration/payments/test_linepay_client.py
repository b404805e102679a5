"""The LINE Pay client against the emulator over real HTTP: every return code path and fault."""

from __future__ import annotations

import asyncio

import pytest

from emulators.linepay import EmulatorServer, Fault
from pos_bridge.linepay import LinePayClient, LinePayOutcomeUnknown, LinePayRejected
from tests.integration.payments.conftest import make_client


async def _pay(client: LinePayClient, order_id: str, key: str, amount: int = 120) -> object:
    return await asyncio.to_thread(
        client.pay_blocking,
        order_id=order_id,
        amount=amount,
        currency="TWD",
        product_name="咖啡 coffee",
        one_time_key=key,
        add_friend_ids=["shopedge"],
    )


async def test_offline_pay_check_refund(emulator: EmulatorServer) -> None:
    client = make_client(emulator.url)
    key = emulator.state.issue_key(0 + __import__("time").time())
    result = await _pay(client, "o-1", key)
    assert result.paid_amount == 120  # type: ignore[attr-defined]
    tx = result.transaction_id  # type: ignore[attr-defined]
    assert isinstance(tx, str) and len(tx) == 19 and tx == emulator.state.charges["o-1"].transaction_id
    details = await asyncio.to_thread(client.check_order_blocking, "o-1")
    assert (details.status, details.transaction_id, details.paid_amount) == ("COMPLETE", tx, 120)
    await asyncio.to_thread(client.refund_offline_blocking, "o-1", 20)
    details = await asyncio.to_thread(client.check_order_blocking, "o-1")
    assert (details.status, details.refunded_amount) == ("COMPLETE", 20)
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.refund_offline_blocking, "o-1", 101)
    assert exc.value.code == "1164"
    await asyncio.to_thread(client.refund_offline_blocking, "o-1", None)
    assert (await asyncio.to_thread(client.check_order_blocking, "o-1")).status == "REFUND"
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.refund_offline_blocking, "o-1", None)
    assert exc.value.code == "1165"
    assert emulator.state.refund_log == [("o-1", 20), ("o-1", 100)]


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("repeat_order", "1172"),
        ("unknown_key", "1101"),
        ("used_key", "1180"),
        ("expired_key", "1180"),
        ("low_balance", "1142"),
        ("bad_key_length", "2101"),
        ("bad_secret", "1106"),
    ],
)
async def test_offline_pay_return_codes(emulator: EmulatorServer, setup: str, code: str) -> None:
    import time

    client = make_client(emulator.url)
    now = time.time()
    key = emulator.state.issue_key(now)
    order = "o-2"
    if setup == "repeat_order":
        await _pay(client, order, key)
        key = emulator.state.issue_key(now)
    elif setup == "unknown_key":
        key = "123456789012345678"
    elif setup == "used_key":
        await _pay(client, "o-other", key)
    elif setup == "expired_key":
        key = emulator.state.issue_key(now - 400)
    elif setup == "low_balance":
        key = emulator.state.issue_key(now, balance=50)
    elif setup == "bad_key_length":
        key = key[:12]
    elif setup == "bad_secret":
        client = make_client(emulator.url, secret="0" * 32)
    with pytest.raises(LinePayRejected) as exc:
        await _pay(client, order, key)
    assert exc.value.code == code
    assert order not in emulator.state.charges or setup == "repeat_order"


async def test_check_unknown_order_is_not_found(emulator: EmulatorServer) -> None:
    client = make_client(emulator.url)
    assert (await asyncio.to_thread(client.check_order_blocking, "nope")).status == "NOT_FOUND"
    assert (await asyncio.to_thread(client.online_details_blocking, "nope")).status == "NOT_FOUND"


async def test_reused_nonce_is_refused(emulator: EmulatorServer) -> None:
    client = LinePayClient(
        make_client(emulator.url)._config, make_client(emulator.url)._timeouts, nonce=lambda: "same"
    )
    await asyncio.to_thread(client.check_order_blocking, "a")
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.check_order_blocking, "b")
    assert exc.value.code == "1106"


async def test_online_request_check_confirm_refund(emulator: EmulatorServer) -> None:
    import time

    client = make_client(emulator.url)
    req = await asyncio.to_thread(
        client.request_blocking,
        order_id="q-1",
        amount=300,
        currency="TWD",
        product_name="茶",
        add_friend_ids=[],
    )
    assert len(req.transaction_id) == 19 and req.access_token is not None and len(req.access_token) == 12
    assert "transactionReserveId=" in req.payment_url
    assert await asyncio.to_thread(client.check_request_blocking, req.transaction_id) == "0000"
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.confirm_blocking, req.transaction_id, 300, "TWD")
    assert exc.value.code == "1159"
    emulator.state.approve(req.transaction_id, time.time())
    assert await asyncio.to_thread(client.check_request_blocking, req.transaction_id) == "0110"
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.confirm_blocking, req.transaction_id, 299, "TWD")
    assert exc.value.code == "2101"
    paid = await asyncio.to_thread(client.confirm_blocking, req.transaction_id, 300, "TWD")
    assert (paid.transaction_id, paid.paid_amount) == (req.transaction_id, 300)
    assert await asyncio.to_thread(client.check_request_blocking, req.transaction_id) == "0123"
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.confirm_blocking, req.transaction_id, 300, "TWD")
    assert exc.value.code == "1172"
    details = await asyncio.to_thread(client.online_details_blocking, "q-1")
    assert (details.status, details.paid_amount) == ("COMPLETE", 300)
    await asyncio.to_thread(client.refund_online_blocking, req.transaction_id, None)
    assert (await asyncio.to_thread(client.online_details_blocking, "q-1")).status == "REFUND"


async def test_online_cancelled_and_failed_codes(emulator: EmulatorServer) -> None:
    import time

    client = make_client(emulator.url)
    a = await asyncio.to_thread(
        client.request_blocking, order_id="q-a", amount=5, currency="TWD", product_name="x", add_friend_ids=[]
    )
    emulator.state.approve(a.transaction_id, time.time(), ok=False)
    assert await asyncio.to_thread(client.check_request_blocking, a.transaction_id) == "0122"
    b = await asyncio.to_thread(
        client.request_blocking, order_id="q-b", amount=5, currency="TWD", product_name="x", add_friend_ids=[]
    )
    emulator.state.reservations[b.transaction_id].created_at -= 21 * 60
    assert await asyncio.to_thread(client.check_request_blocking, b.transaction_id) == "0121"


@pytest.mark.parametrize("kind", ["timeout", "drop", "5xx"])
async def test_fault_after_charge_is_outcome_unknown_and_check_finds_it(
    emulator: EmulatorServer, kind: str
) -> None:
    import time

    client = make_client(emulator.url, read=0.5)
    emulator.state.faults.append(Fault(endpoint="pay", kind=kind, seconds=1.5))  # type: ignore[arg-type]
    key = emulator.state.issue_key(time.time())
    with pytest.raises(LinePayOutcomeUnknown):
        await _pay(client, "f-1", key)
    assert "f-1" in emulator.state.charges  # the charge was made
    details = await asyncio.to_thread(client.check_order_blocking, "f-1")
    assert details.status == "COMPLETE" and details.paid_amount == 120
    with pytest.raises(LinePayRejected) as exc:  # resending would be refused, never a second charge
        await _pay(client, "f-1", emulator.state.issue_key(time.time()))
    assert exc.value.code == "1172"


async def test_5xx_before_effect_charges_nothing(emulator: EmulatorServer) -> None:
    import time

    client = make_client(emulator.url)
    emulator.state.faults.append(Fault(endpoint="pay", kind="5xx", after_effect=False))
    with pytest.raises(LinePayOutcomeUnknown):
        await _pay(client, "f-2", emulator.state.issue_key(time.time()))
    assert (await asyncio.to_thread(client.check_order_blocking, "f-2")).status == "NOT_FOUND"


async def test_unreachable_is_outcome_unknown() -> None:
    client = make_client("http://127.0.0.1:9")
    with pytest.raises(LinePayOutcomeUnknown):
        await asyncio.to_thread(client.check_order_blocking, "x")


async def test_in_process_codes_1198_and_1145(emulator: EmulatorServer) -> None:
    import time

    client = make_client(emulator.url, read=5.0)
    emulator.state.faults.append(Fault(endpoint="pay", kind="slow", seconds=0.6))
    first = asyncio.create_task(_pay(client, "P-1", emulator.state.issue_key(time.time())))
    await asyncio.sleep(0.2)
    with pytest.raises(LinePayRejected) as exc:
        await asyncio.to_thread(client.check_order_blocking, "P-1")
    assert exc.value.code == "1145"
    with pytest.raises(LinePayRejected) as exc:
        await _pay(client, "P-1", emulator.state.issue_key(time.time()))
    assert exc.value.code == "1198"
    assert (await first).paid_amount == 120  # type: ignore[attr-defined]
    assert (await asyncio.to_thread(client.check_order_blocking, "P-1")).status == "COMPLETE"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "2102"),
        (
            '{"amount": 10.5, "currency": "TWD", "orderId": "x", "oneTimeKey": "123456789012345678", '
            '"packages": [{"amount": 10.5}]}',
            "1124",
        ),
        (
            '{"amount": 10, "currency": "USD", "orderId": "x", "oneTimeKey": "123456789012345678", '
            '"packages": [{"amount": 10}]}',
            "1178",
        ),
        (
            '{"amount": 10, "currency": "TWD", "orderId": "x", "oneTimeKey": "123456789012345678", '
            '"packages": [{"amount": 9}]}',
            "2101",
        ),
    ],
)
async def test_malformed_pay_bodies(emulator: EmulatorServer, body: str, code: str) -> None:
    import requests

    client = make_client(emulator.url)
    path = "/v4/payments/oneTimeKeys/pay"
    answer = await asyncio.to_thread(
        requests.post, emulator.url + path, data=body.encode(), headers=client.headers(path, body), timeout=5
    )
    assert answer.json()["returnCode"] == code
    assert not emulator.state.charges
