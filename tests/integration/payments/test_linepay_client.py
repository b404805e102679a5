"""The LINE Pay client against the emulator over real HTTP: every return code path and fault."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from agent.config import TimeoutsConfig
from emulators.linepay import EmulatorServer, Fault
from pos_bridge.linepay import LinePayClient, LinePayOutcomeUnknown, LinePayRejected, PayResult
from tests.integration.payments.conftest import MakeClient, make_client


async def _pay(client: LinePayClient, order_id: str, key: str, amount: int = 120) -> PayResult:
    return await client.pay(
        order_id=order_id,
        amount=amount,
        currency="TWD",
        product_name="咖啡 coffee",
        one_time_key=key,
        add_friend_ids=["shopedge"],
    )


async def test_offline_pay_check_refund(emulator: EmulatorServer, clients: MakeClient) -> None:
    client = clients(emulator.url)
    key = emulator.state.issue_key(0 + __import__("time").time())
    result = await _pay(client, "o-1", key)
    assert result.paid_amount == 120
    tx = result.transaction_id
    assert isinstance(tx, str) and len(tx) == 19 and tx == emulator.state.charges["o-1"].transaction_id
    details = await client.check_order("o-1")
    assert (details.status, details.transaction_id, details.paid_amount) == ("COMPLETE", tx, 120)
    await client.refund_offline("o-1", 20)
    details = await client.check_order("o-1")
    assert (details.status, details.refunded_amount) == ("COMPLETE", 20)
    with pytest.raises(LinePayRejected) as exc:
        await client.refund_offline("o-1", 101)
    assert exc.value.code == "1164"
    await client.refund_offline("o-1", None)
    assert (await client.check_order("o-1")).status == "REFUND"
    with pytest.raises(LinePayRejected) as exc:
        await client.refund_offline("o-1", None)
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
async def test_offline_pay_return_codes(
    emulator: EmulatorServer, clients: MakeClient, setup: str, code: str
) -> None:
    import time

    client = clients(emulator.url)
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
        client = clients(emulator.url, secret="0" * 32)
    with pytest.raises(LinePayRejected) as exc:
        await _pay(client, order, key)
    assert exc.value.code == code
    assert order not in emulator.state.charges or setup == "repeat_order"


async def test_check_unknown_order_is_not_found(emulator: EmulatorServer, clients: MakeClient) -> None:
    client = clients(emulator.url)
    assert (await client.check_order("nope")).status == "NOT_FOUND"
    assert (await client.online_details("nope")).status == "NOT_FOUND"


async def test_reused_nonce_is_refused(emulator: EmulatorServer, clients: MakeClient) -> None:
    client = clients(emulator.url, nonce=lambda: "same")
    await client.check_order("a")
    with pytest.raises(LinePayRejected) as exc:
        await client.check_order("b")
    assert exc.value.code == "1106"


async def test_online_request_check_confirm_refund(emulator: EmulatorServer, clients: MakeClient) -> None:
    import time

    client = clients(emulator.url)
    req = await client.request(
        order_id="q-1",
        amount=300,
        currency="TWD",
        product_name="茶",
        add_friend_ids=[],
    )
    assert len(req.transaction_id) == 19 and req.access_token is not None and len(req.access_token) == 12
    assert "transactionReserveId=" in req.payment_url
    assert await client.check_request(req.transaction_id) == "0000"
    with pytest.raises(LinePayRejected) as exc:
        await client.confirm(req.transaction_id, 300, "TWD")
    assert exc.value.code == "1159"
    emulator.state.approve(req.transaction_id, time.time())
    assert await client.check_request(req.transaction_id) == "0110"
    with pytest.raises(LinePayRejected) as exc:
        await client.confirm(req.transaction_id, 299, "TWD")
    assert exc.value.code == "2101"
    paid = await client.confirm(req.transaction_id, 300, "TWD")
    assert (paid.transaction_id, paid.paid_amount) == (req.transaction_id, 300)
    assert await client.check_request(req.transaction_id) == "0123"
    with pytest.raises(LinePayRejected) as exc:
        await client.confirm(req.transaction_id, 300, "TWD")
    assert exc.value.code == "1172"
    details = await client.online_details("q-1")
    assert (details.status, details.paid_amount) == ("COMPLETE", 300)
    await client.refund_online(req.transaction_id, None)
    assert (await client.online_details("q-1")).status == "REFUND"


async def test_online_cancelled_and_failed_codes(emulator: EmulatorServer, clients: MakeClient) -> None:
    import time

    client = clients(emulator.url)
    a = await client.request(order_id="q-a", amount=5, currency="TWD", product_name="x", add_friend_ids=[])
    emulator.state.approve(a.transaction_id, time.time(), ok=False)
    assert await client.check_request(a.transaction_id) == "0122"
    b = await client.request(order_id="q-b", amount=5, currency="TWD", product_name="x", add_friend_ids=[])
    emulator.state.reservations[b.transaction_id].created_at -= 21 * 60
    assert await client.check_request(b.transaction_id) == "0121"


@pytest.mark.parametrize("kind", ["timeout", "drop", "5xx"])
async def test_fault_after_charge_is_outcome_unknown_and_check_finds_it(
    emulator: EmulatorServer, clients: MakeClient, kind: str
) -> None:
    import time

    client = clients(emulator.url, read=0.5)
    emulator.state.faults.append(Fault(endpoint="pay", kind=kind, seconds=1.5))  # type: ignore[arg-type]
    key = emulator.state.issue_key(time.time())
    with pytest.raises(LinePayOutcomeUnknown):
        await _pay(client, "f-1", key)
    assert "f-1" in emulator.state.charges  # the charge was made
    details = await client.check_order("f-1")
    assert details.status == "COMPLETE" and details.paid_amount == 120
    with pytest.raises(LinePayRejected) as exc:  # resending would be refused, never a second charge
        await _pay(client, "f-1", emulator.state.issue_key(time.time()))
    assert exc.value.code == "1172"


async def test_5xx_before_effect_charges_nothing(emulator: EmulatorServer, clients: MakeClient) -> None:
    import time

    client = clients(emulator.url)
    emulator.state.faults.append(Fault(endpoint="pay", kind="5xx", after_effect=False))
    with pytest.raises(LinePayOutcomeUnknown):
        await _pay(client, "f-2", emulator.state.issue_key(time.time()))
    assert (await client.check_order("f-2")).status == "NOT_FOUND"


async def test_unreachable_is_outcome_unknown(clients: MakeClient) -> None:
    client = clients("http://127.0.0.1:9")
    with pytest.raises(LinePayOutcomeUnknown):
        await client.check_order("x")


async def test_in_process_codes_1198_and_1145(emulator: EmulatorServer, clients: MakeClient) -> None:
    import time

    client = clients(emulator.url, read=5.0)
    emulator.state.faults.append(Fault(endpoint="pay", kind="slow", seconds=0.6))
    first = asyncio.create_task(_pay(client, "P-1", emulator.state.issue_key(time.time())))
    await asyncio.sleep(0.2)
    with pytest.raises(LinePayRejected) as exc:
        await client.check_order("P-1")
    assert exc.value.code == "1145"
    with pytest.raises(LinePayRejected) as exc:
        await _pay(client, "P-1", emulator.state.issue_key(time.time()))
    assert exc.value.code == "1198"
    assert (await first).paid_amount == 120
    assert (await client.check_order("P-1")).status == "COMPLETE"


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
async def test_malformed_pay_bodies(
    emulator: EmulatorServer, clients: MakeClient, body: str, code: str
) -> None:
    client = clients(emulator.url)
    path = "/v4/payments/oneTimeKeys/pay"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.post(emulator.url + path, data=body.encode(), headers=client.headers(path, body)) as answer,
    ):
        assert (await answer.json())["returnCode"] == code
    assert not emulator.state.charges


@pytest.mark.parametrize("after_effect", [True, False])
async def test_a_dropped_check_is_outcome_unknown_and_not_resent(
    emulator: EmulatorServer, clients: MakeClient, after_effect: bool
) -> None:
    """aiohttp would resend a dropped GET with the same nonce (LINE's 1106, a false refusal)."""
    client = clients(emulator.url)
    emulator.state.faults.append(Fault(endpoint="check", kind="drop", after_effect=after_effect, count=2))
    seen = len(emulator.state.nonces)
    with pytest.raises(LinePayOutcomeUnknown):
        await client.check_order("d-1")
    assert emulator.state.faults[0].count == 1  # one of the two drops used: the check went out once
    assert len(emulator.state.nonces) == seen + after_effect


async def test_each_call_waits_its_own_read_timeout(emulator: EmulatorServer) -> None:
    """The pay waits `linepay_pay` for LINE's answer; a check gives up after `linepay_check`."""
    import time

    timeouts = TimeoutsConfig(
        linepay_connect=1.0, linepay_pay=3.0, linepay_request=0.3, linepay_check=0.3, linepay_capture=0.3
    )
    async with LinePayClient(make_client(emulator.url)._config, timeouts) as client:
        emulator.state.faults.append(Fault(endpoint="pay", kind="delay", seconds=1.0))
        assert (await _pay(client, "t-1", emulator.state.issue_key(time.time()))).paid_amount == 120
        emulator.state.faults.append(Fault(endpoint="check", kind="delay", seconds=1.0))
        with pytest.raises(LinePayOutcomeUnknown, match="timed out"):
            await client.check_order("t-1")


async def test_the_client_closes_only_the_session_it_owns(emulator: EmulatorServer) -> None:
    async with aiohttp.ClientSession() as shared:
        injected = make_client(emulator.url)
        injected = LinePayClient(injected._config, injected._timeouts, session=shared)
        assert (await injected.check_order("s-1")).status == "NOT_FOUND"
        await injected.close()
        assert not shared.closed
    owned = make_client(emulator.url)
    assert (await owned.check_order("s-2")).status == "NOT_FOUND"
    session = owned._session
    await owned.close()
    assert session is not None and session.closed
    with pytest.raises(RuntimeError):
        await owned.check_order("s-3")


def test_the_daemon_s_path_never_imports_requests() -> None:
    code = (
        "import sys, agent.commands.run, agent.daemon, agent.wiring, agent.wiring.pos, pos_bridge.service;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3')))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
