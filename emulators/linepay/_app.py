"""The LINE Pay emulator as an aiohttp app: authentication, routes, fault injection, control API.

Owns the HTTP side only; every decision comes from `LinePayState`. Runs in-process on a free
127.0.0.1 port (`EmulatorServer`), or on its own thread for tests that drive a subprocess agent
(`ThreadedEmulator`). `/_emulator/*` is the control API the demo and tests use to play the
shopper (issue a My Code key, approve a QR payment), inject faults and read the ledger.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, unquote

from aiohttp import web

from emulators.linepay._state import Fault, LedgerError, LinePayState

__all__ = ["EmulatorServer", "ThreadedEmulator", "create_emulator_app"]

STATE_KEY = web.AppKey("linepay_state", LinePayState)
T = TypeVar("T")


def documented_signature(channel_secret: str, path: str, payload: str, nonce: str) -> str:
    """X-LINE-Authorization as LINE Pay's API documents it, computed here on its own so that a
    mistake in the production client cannot hide in its stand-in:
    Base64(HMAC-SHA256(key=channelSecret, channelSecret + URI + (body | query string) + nonce))."""
    mac = hmac.new(channel_secret.encode(), f"{channel_secret}{path}{payload}{nonce}".encode(), "sha256")
    return base64.b64encode(mac.digest()).decode()


def _answer(code: str = "0000", message: str = "Success.", info: Any = None) -> web.Response:
    body: dict[str, Any] = {"returnCode": code, "returnMessage": message}
    if info is not None:
        body["info"] = info
    return web.json_response(body, dumps=lambda o: json.dumps(o, default=_decimal))


def _decimal(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    raise TypeError(type(value).__name__)


def create_emulator_app(
    state: LinePayState,
    *,
    channel_id: str,
    channel_secret: str,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """An aiohttp app that answers like LINE Pay for one merchant channel."""

    async def authenticate(request: web.Request, payload: str) -> None:
        nonce = request.headers.get("X-LINE-Authorization-Nonce", "")
        given = request.headers.get("X-LINE-Authorization", "")
        if request.headers.get("X-LINE-ChannelId") != channel_id:
            raise LedgerError("1106", "header information error: X-LINE-ChannelId")
        if not nonce or not given:
            raise LedgerError("1106", "header information error: authorization headers missing")
        path = request.raw_path.split("?", 1)[0]
        expected = documented_signature(channel_secret, path, payload, nonce)
        if not hmac.compare_digest(expected, given):
            raise LedgerError("1106", "header information error: signature mismatch")
        # Nonce reuse is refused (UNCONFIRMED that LINE does; the safe assumption for a client).
        if nonce in state.nonces:
            raise LedgerError("1106", "header information error: nonce already used")
        state.nonces.add(nonce)
        # The optional device pair (offline API): both or neither (EMULATOR CHOICE: 1106).
        device = {k: v for k, v in request.headers.items() if k.lower().startswith("x-line-merchantdevice")}
        if len(device) == 1:
            raise LedgerError("1106", "header information error: MerchantDeviceProfileId needs its Type")
        state.device_headers.append((path, device))

    async def body_of(request: web.Request) -> dict[str, Any]:
        text = await request.text()
        await authenticate(request, text)
        try:
            body = json.loads(text or "{}", parse_float=Decimal)
        except ValueError:
            raise LedgerError("2102", "JSON data format error") from None
        if not isinstance(body, dict):
            raise LedgerError("2102", "JSON body must be an object")
        state.bodies.append((request.path, body))
        return body

    async def query_of(request: web.Request) -> dict[str, str]:
        raw = request.rel_url.raw_query_string
        await authenticate(request, raw)
        return {k: v[0] for k, v in parse_qs(raw).items()}

    async def guarded(
        request: web.Request, endpoint: str, effect: Callable[[], Awaitable[web.Response]]
    ) -> web.StreamResponse:
        fault = state.take_fault(endpoint)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind in ("5xx", "drop") and not fault.after_effect:
            return _fail(request, fault)
        try:
            response = await effect()
        except LedgerError as exc:
            response = _answer(exc.code, exc.message)
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind in ("5xx", "drop"):
            return _fail(request, fault)
        return response

    def route(endpoint: str, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await guarded(request, endpoint, lambda: handler(request))

        return wrapped

    # ------------------------------------------------------------ offline v4

    async def pay(request: web.Request) -> web.Response:
        body = await body_of(request)
        order_id, amount, currency, key = state.validate_pay(body)
        state.processing.add(order_id)
        try:
            slow = state.take_special("slow", "pay")
            if slow is not None:
                await asyncio.sleep(slow.seconds)
            charge = state.pay(order_id, amount, currency, key, clock())
        finally:
            state.processing.discard(order_id)
        info = charge.as_info()
        info.pop("refundList")
        return _answer(info=info)

    async def check(request: web.Request) -> web.Response:
        await query_of(request)
        return _answer(info=state.check(unquote(request.match_info["order_id"]), clock()))

    async def offline_payments(request: web.Request) -> web.Response:
        query = await query_of(request)
        rows = state.payments(
            order_id=query.get("orderId"), transaction_id=query.get("transactionId"), method="offline"
        )
        return _answer(info=rows)

    async def refund_offline(request: web.Request) -> web.Response:
        body = await body_of(request)
        charge = state.offline_charge(unquote(request.match_info["order_id"]))
        return _answer(info=state.refund(charge, body))

    # ------------------------------------------------------------ online v3

    async def request_payment(request: web.Request) -> web.Response:
        body = await body_of(request)
        reservation = state.request(body, clock())
        reserve = reservation.transaction_id
        host = f"{request.scheme}://{request.host}"
        return _answer(
            info={
                "transactionId": int(reserve),
                "paymentAccessToken": reservation.access_token,
                "paymentUrl": {
                    "web": f"{host}/web/payment/wait?transactionReserveId={reserve}",
                    "app": f"line://pay/payment/{reserve}",
                },
            }
        )

    async def check_request(request: web.Request) -> web.Response:
        await query_of(request)
        code = state.check_request(request.match_info["tx"], clock())
        return _answer(code, "checked")

    async def confirm(request: web.Request) -> web.Response:
        body = await body_of(request)
        charge = state.confirm(request.match_info["tx"], body, clock())
        info = charge.as_info()
        info.pop("refundList")
        return _answer(info=info)

    async def details(request: web.Request) -> web.Response:
        query = await query_of(request)
        rows = state.payments(
            order_id=query.get("orderId"), transaction_id=query.get("transactionId"), method="online"
        )
        return _answer(info=rows)

    async def refund_online(request: web.Request) -> web.Response:
        body = await body_of(request)
        return _answer(info=state.refund(state.online_charge(request.match_info["tx"]), body))

    # ------------------------------------------------------------ control API (not LINE's)

    async def ctl_key(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        key = state.issue_key(clock(), balance=int(body.get("balance", 1_000_000)))
        return web.json_response({"oneTimeKey": key})

    async def ctl_approve(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        order_id = request.match_info["order_id"]
        pending = [r for r in state.reservations.values() if r.order_id == order_id and r.state == "pending"]
        if not pending:
            return web.json_response({"error": "no pending request for this order"}, status=404)
        try:
            state.approve(pending[-1].transaction_id, clock(), ok=bool(body.get("ok", True)))
        except LedgerError as exc:
            return web.json_response({"error": exc.message}, status=409)
        return web.json_response({"transactionId": pending[-1].transaction_id})

    async def ctl_fault(request: web.Request) -> web.Response:
        body = await request.json()
        state.faults.append(Fault(**body))
        return web.json_response({"faults": len(state.faults)})

    async def ctl_clear(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"faults": 0})

    async def ctl_ledger(request: web.Request) -> web.Response:
        return web.json_response(state.snapshot())

    async def wait_page(request: web.Request) -> web.Response:
        return web.Response(text="LINE Pay emulator: scan with LINE to pay", content_type="text/plain")

    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_post("/v4/payments/oneTimeKeys/pay", route("pay", pay))
    app.router.add_get("/v4/payments/orders/{order_id}/check", route("check", check))
    app.router.add_get("/v4/payments", route("payments", offline_payments))
    app.router.add_post("/v4/payments/orders/{order_id}/refund", route("refund_offline", refund_offline))
    app.router.add_post("/v3/payments/request", route("request", request_payment))
    app.router.add_get("/v3/payments/requests/{tx}/check", route("check_request", check_request))
    app.router.add_post("/v3/payments/{tx}/confirm", route("confirm", confirm))
    app.router.add_get("/v3/payments", route("details", details))
    app.router.add_post("/v3/payments/{tx}/refund", route("refund_online", refund_online))
    app.router.add_get("/web/payment/wait", wait_page)
    app.router.add_post("/_emulator/keys", ctl_key)
    app.router.add_post("/_emulator/approve/{order_id}", ctl_approve)
    app.router.add_post("/_emulator/faults", ctl_fault)
    app.router.add_delete("/_emulator/faults", ctl_clear)
    app.router.add_get("/_emulator/ledger", ctl_ledger)
    return app


def _fail(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind == "drop":
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError  # nothing more is written: the client sees a reset
    return web.json_response({"error": "injected 5xx"}, status=503)


class EmulatorServer:
    """The emulator on 127.0.0.1 in the current event loop (an async context manager)."""

    def __init__(
        self,
        *,
        channel_id: str,
        channel_secret: str,
        port: int = 0,
        state: LinePayState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state or LinePayState()
        self.app = create_emulator_app(
            self.state, channel_id=channel_id, channel_secret=channel_secret, clock=clock
        )
        self._port = port
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=False)
        self.url = ""

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedEmulator:
    """The emulator on its own thread and loop, for tests whose agent runs as a subprocess."""

    def __init__(self, *, channel_id: str, channel_secret: str, port: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self.server = EmulatorServer(channel_id=channel_id, channel_secret=channel_secret, port=port)
        self._thread = threading.Thread(target=self._loop.run_forever, name="linepay-emulator", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> LinePayState:
        return self.server.state

    def start(self) -> Self:
        self._thread.start()
        self.call(self.server.start)
        return self

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def sync(self, fn: Callable[[LinePayState], T]) -> T:
        """Run `fn(state)` on the emulator's loop, so it never races a request."""

        async def run() -> T:
            return fn(self.state)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        self.call(self.server.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
