"""Demo steps of the payments capability: one payment by each method through the LINE Pay emulator.

The emulator is started in-process on the port `linepay.api_base` names in the demo config;
the steps then act as the till (POS API over HTTP with the bearer token), the shopper (a My
Code key from the emulator, a QR approval through its control API) and the cashier's scanner
(the key is handed to the waiting sale exactly as the scanner component does).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

if TYPE_CHECKING:  # agent.demo imports this module to build its SCENARIO
    from agent.demo import DemoRun, Step

__all__ = ["STEPS", "step_linepay_emulator", "step_pay_by_qr", "step_pay_by_scan"]

WAIT_S = 30.0


def _failed(message: str) -> Exception:
    from agent.demo import DemoStepFailed

    return DemoStepFailed(message)


async def step_linepay_emulator(run: DemoRun) -> str:
    from emulators.linepay import EmulatorServer

    base = run.config.linepay.api_base
    if base is None:
        raise _failed("linepay.api_base is not set: the demo needs the emulator")
    server = EmulatorServer(
        channel_id=run.config.linepay.channel_id,
        channel_secret=run.config.linepay.channel_secret.get_secret_value(),
        port=urlsplit(base).port or 80,
    )
    await server.start()
    run.extras["linepay"] = server
    return f"LINE Pay emulator on {server.url}"


async def _pos(run: DemoRun, method: str, path: str, body: Any = None) -> dict[str, Any]:
    url = f"http://{run.config.pos.listen}{path}"
    headers = {"Authorization": f"Bearer {run.config.pos.token.get_secret_value()}"}
    timeout = aiohttp.ClientTimeout(total=WAIT_S + 5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        deadline = time.monotonic() + 10
        while True:
            try:
                async with session.request(method, url, json=body, headers=headers) as response:
                    answer: dict[str, Any] = await response.json()
                    if response.status >= 400:
                        raise _failed(f"{method} {path}: {response.status} {answer}")
                    return answer
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise _failed(f"POS API not reachable on {run.config.pos.listen}") from None
                await asyncio.sleep(0.2)


async def _until(run: DemoRun, order_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    view = await _pos(run, "GET", f"/v1/payments/{order_id}")
    while view["status"] not in statuses:
        if time.monotonic() > deadline or view["status"] in ("failed", "cancelled"):
            raise _failed(f"order {order_id} is {view['status']}: {view.get('error_message')}")
        view = await _pos(run, "GET", f"/v1/payments/{order_id}?wait=5&version={view['version']}")
    return view


async def _on_display(run: DemoRun, kind: str, **fields: Any) -> str:
    """Wait for the running display's current screen (when a display service is up)."""
    display = run.ctx.services.get("display")
    if display is None or not hasattr(display, "screen"):
        return "no display running"
    deadline = time.monotonic() + 5
    while True:
        screen = display.screen
        if type(screen).__name__ == kind and all(getattr(screen, k, None) == v for k, v in fields.items()):
            return f"display shows {kind}"
        if time.monotonic() > deadline:
            raise _failed(f"display should show {kind} {fields}, shows {screen!r}")
        await asyncio.sleep(0.05)


async def step_pay_by_scan(run: DemoRun) -> str:
    emulator = run.extras["linepay"]
    order_id = f"demo-scan-{int(time.time())}"
    await _pos(
        run,
        "POST",
        "/v1/payments",
        {
            "order_id": order_id,
            "amount": 120,
            "currency": "TWD",
            "product_name": "拿鐵 Latte",
            "method": "scan_code",
        },
    )
    key = emulator.state.issue_key(time.time())  # the shopper opens LINE Pay "My Code"
    service = run.ctx.services.get("payments")
    if service is None:
        raise _failed("payment service is not running")
    await service.key_scanned(key)  # what the scanner component does with a scan
    view = await _until(run, order_id, "paid")
    shown = await _on_display(run, "PaidScreen", amount_twd=120)
    return f"scan_code: {order_id} paid {view['paid_amount']} TWD (tx {view['transaction_id']}); {shown}"


async def step_pay_by_qr(run: DemoRun) -> str:
    emulator = run.extras["linepay"]
    order_id = f"demo-qr-{int(time.time())}"
    await _pos(
        run,
        "POST",
        "/v1/payments",
        {
            "order_id": order_id,
            "amount": 85,
            "currency": "TWD",
            "product_name": "珍珠奶茶 Bubble tea",
            "method": "qr",
        },
    )
    view = await _until(run, order_id, "requested")
    token = view["access_token"]
    await _on_display(run, "PayScreen", qr_url=view["payment_url"], access_token=token)
    async with aiohttp.ClientSession() as session:  # the shopper scans the QR and approves
        approve = f"{emulator.url}/_emulator/approve/{view['attempt_order_id']}"
        async with session.post(approve, json={"ok": True}) as response:
            if response.status != 200:
                raise _failed(f"emulator refused the approval: {await response.text()}")
    view = await _until(run, order_id, "paid")
    shown = await _on_display(run, "PaidScreen", amount_twd=85)
    run.extras["order_id"] = order_id  # the sale whose binding QR is now on screen
    return f"qr: {order_id} paid {view['paid_amount']} TWD via QR (token {token}); {shown}"


STEPS: list[tuple[str, Step]] = [
    ("LINE Pay emulator", step_linepay_emulator),
    ("pay by My Code (cashier scans)", step_pay_by_scan),
    ("pay by counter QR (shopper scans)", step_pay_by_qr),
]
