"""LINE Pay merchant client: offline v4 (the cashier scans "My Code") and online v3 (the shopper
scans the counter QR), plus the pure request `signature()`.

Owns the wire format: which path, which headers, which body, how each answer maps to a
result or to one of this module's errors. It is async on the daemon's one event loop: one
aiohttp session (created at the first call inside the running loop, closed by `close()`), and
per-request connect/read timeouts from `config.timeouts`, LINE's documented minimums. Each
request goes out once: aiohttp's own resend of an idempotent request after a dropped
connection would reuse the single-use nonce, so that is refused and counts as a dropped call.

The body that is signed is exactly the body that is sent: it is serialised once, to bytes, and
the same bytes go to `signature()` and to the socket. transactionId is a 19-digit number that
does not fit a JS double; Python parses JSON integers exactly and this module turns it into a
string at once, so it stays a string end to end.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from pos_bridge.config import LinePayConfig
from pos_bridge.ports import LinePayTimeouts

__all__ = [
    "HOSTS",
    "CheckStatus",
    "LinePayClient",
    "LinePayError",
    "LinePayOutcomeUnknown",
    "LinePayRejected",
    "OrderDetails",
    "PayResult",
    "RequestResult",
    "signature",
]

HOSTS = {"sandbox": "https://sandbox-api-pay.line.me", "production": "https://api-pay.line.me"}
# With confirmUrlType NONE LINE never redirects the shopper, but confirmUrl stays a required field.
UNUSED_CONFIRM_URL = "https://shopedge.invalid/linepay/confirm"

CheckStatus = Literal["COMPLETE", "FAIL", "REFUND", "CANCEL", "AUTH_READY", "NOT_FOUND"]
# What the offline check answers and what each means to the payment. COMPLETE|FAIL|REFUND come
# from an SDK; CANCEL (final: nothing charged) and AUTH_READY (authorised, not complete yet:
# check again) were seen in LINE's sandbox. Any other status is "not known yet".
_CHECK_STATUSES = frozenset({"COMPLETE", "FAIL", "REFUND", "CANCEL", "AUTH_READY"})


def signature(channel_secret: str, path: str, payload: str, nonce: str) -> str:
    """LINE Pay's request signature: Base64(HMAC-SHA256(secret, secret + path + payload + nonce)).

    Args:
        channel_secret: the merchant channel secret (also the HMAC key).
        path: the API path only, no host and no `?` (e.g. "/v3/payments/request").
        payload: for POST the exact JSON text sent; for GET the query string without `?` ("" if none).
        nonce: the value sent in X-LINE-Authorization-Nonce (unique per request).

    Returns:
        The value of the X-LINE-Authorization header.
    """
    message = (channel_secret + path + payload + nonce).encode("utf-8")
    digest = hmac.new(channel_secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class LinePayError(Exception):
    """Root of every LINE Pay client error."""


class LinePayRejected(LinePayError):
    """LINE Pay answered and refused: `code` is its returnCode (e.g. "1172")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"LINE Pay {code}: {message}")
        self.code = code
        self.message = message


class LinePayOutcomeUnknown(LinePayError):
    """LINE Pay could not be reached or did not answer: the call may or may not have taken effect.

    Raised for timeouts, dropped connections, 5xx and unreadable answers alike; callers must
    find out what happened (check by order id), never blindly resend a pay.
    """


@dataclass(frozen=True, kw_only=True)
class PayResult:
    transaction_id: str
    paid_amount: int


@dataclass(frozen=True, kw_only=True)
class RequestResult:
    transaction_id: str
    payment_url: str
    access_token: str | None


@dataclass(frozen=True, kw_only=True)
class OrderDetails:
    """What LINE Pay's ledger says about one order id."""

    status: CheckStatus
    transaction_id: str | None = None
    paid_amount: int = 0
    refunded_amount: int = 0


def _amount_sum(pay_info: Any) -> int:
    if not isinstance(pay_info, list):
        return 0
    return int(sum(Decimal(str(item.get("amount", 0))) for item in pay_info if isinstance(item, Mapping)))


def _refund_sum(refunds: Any) -> int:
    if not isinstance(refunds, list):
        return 0
    return int(
        sum(abs(Decimal(str(item.get("refundAmount", 0)))) for item in refunds if isinstance(item, Mapping))
    )


class LinePayClient:
    """Async LINE Pay API client; one per process, shared by every payment. `close()` it (or use
    it with `async with`) when the daemon stops.

    Args:
        config: the `[linepay]` section (credentials, mode, optional `api_base`).
        timeouts: the `[timeouts]` section.
        session: an HTTP session the caller owns and closes; None makes the client own one.
        nonce: nonce factory, UUID4 by default.
        device_id: this device's id, the default X-LINE-MerchantDeviceProfileId sent (with
            X-LINE-MerchantDeviceType) on every offline call.
    """

    def __init__(
        self,
        config: LinePayConfig,
        timeouts: LinePayTimeouts,
        *,
        session: aiohttp.ClientSession | None = None,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
        device_id: str = "",
    ) -> None:
        self._config = config
        # X-LINE-MerchantDeviceProfileId: the configured terminal id, else this device's id.
        self.device_profile_id = config.merchant_device_profile_id or device_id
        self._timeouts = timeouts
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._nonce = nonce
        self.base = (config.api_base or HOSTS[config.mode]).rstrip("/")

    async def __aenter__(self) -> LinePayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session the client owns (an injected one stays open); later calls fail."""
        self._closed = True
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Created here, not in __init__: an aiohttp session needs the running loop.
        if self._closed:
            raise RuntimeError("LinePayClient used after close()")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # ------------------------------------------------------------------ offline v4

    async def pay(
        self,
        *,
        order_id: str,
        amount: int,
        currency: str,
        product_name: str,
        one_time_key: str,
        add_friend_ids: list[str],
    ) -> PayResult:
        """POST /v4/payments/oneTimeKeys/pay (read timeout `timeouts.linepay_pay`, >= 40 s)."""
        body: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "orderId": order_id,
            "oneTimeKey": one_time_key,
            "packages": [_package(order_id, amount, product_name)],
        }
        if add_friend_ids and self._config.add_friends_offline:
            # Undocumented for offline v4 (v2 used extras.addFriends LINE_AT): sent only when
            # `linepay.add_friends_offline` is on, in the online v3/v4 shape v4 shares.
            body["options"] = {
                "familyService": {"addFriends": [{"type": "lineAt", "idList": add_friend_ids}]}
            }
        info = await self._call(
            "POST", "/v4/payments/oneTimeKeys/pay", body=body, read=self._timeouts.linepay_pay
        )
        return PayResult(transaction_id=_tx(info), paid_amount=_amount_sum(info.get("payInfo")))

    async def check_order(self, order_id: str) -> OrderDetails:
        """Offline status by order id: check, then the payment list for amounts when it completed."""
        path = f"/v4/payments/orders/{quote(order_id, safe='')}/check"
        try:
            info = await self._call("GET", path, read=self._timeouts.linepay_check)
        except LinePayRejected as exc:
            if exc.code == "1150":
                return OrderDetails(status="NOT_FOUND")
            raise
        status = str(info.get("status", ""))
        # Anything outside `_CHECK_STATUSES` is treated as "not known yet", so the order is
        # checked again instead of being decided.
        if status not in _CHECK_STATUSES:
            raise LinePayOutcomeUnknown(f"check returned unknown status {status!r}")
        if status in ("FAIL", "CANCEL", "AUTH_READY"):
            return OrderDetails(status=status)  # type: ignore[arg-type]
        return await self._details("/v4/payments", order_id, status)  # type: ignore[arg-type]

    async def refund_offline(self, order_id: str, amount: int | None) -> None:
        """POST /v4/payments/orders/{orderId}/refund; `amount` None refunds in full."""
        body: dict[str, Any] = {} if amount is None else {"refundAmount": amount}
        path = f"/v4/payments/orders/{quote(order_id, safe='')}/refund"
        await self._call("POST", path, body=body, read=self._timeouts.linepay_capture)

    # ------------------------------------------------------------------ online v3

    async def request(
        self, *, order_id: str, amount: int, currency: str, product_name: str, add_friend_ids: list[str]
    ) -> RequestResult:
        """POST /v3/payments/request with confirmUrlType NONE (read timeout >= 10 s)."""
        options: dict[str, Any] = {"payment": {"capture": True}}
        if add_friend_ids:
            options["familyService"] = {"addFriends": [{"type": "lineAt", "idList": add_friend_ids}]}
        body = {
            "amount": amount,
            "currency": currency,
            "orderId": order_id,
            "packages": [_package(order_id, amount, product_name)],
            "redirectUrls": {"confirmUrl": UNUSED_CONFIRM_URL, "confirmUrlType": "NONE"},
            "options": options,
        }
        info = await self._call(
            "POST", "/v3/payments/request", body=body, read=self._timeouts.linepay_request
        )
        url = info.get("paymentUrl")
        web = url.get("web") if isinstance(url, Mapping) else None
        if not isinstance(web, str) or not web:
            raise LinePayOutcomeUnknown("request answer has no paymentUrl.web")
        token = info.get("paymentAccessToken")
        return RequestResult(
            transaction_id=_tx(info), payment_url=web, access_token=str(token) if token is not None else None
        )

    async def check_request(self, transaction_id: str) -> str:
        """GET /v3/payments/requests/{transactionId}/check: the returnCode (0000/0110/0121/0122/0123)."""
        path = f"/v3/payments/requests/{transaction_id}/check"
        try:
            await self._call("GET", path, read=self._timeouts.linepay_check)
        except LinePayRejected as exc:
            return exc.code
        return "0000"

    async def confirm(self, transaction_id: str, amount: int, currency: str) -> PayResult:
        """POST /v3/payments/{transactionId}/confirm (captures: TW auto-capture)."""
        info = await self._call(
            "POST",
            f"/v3/payments/{transaction_id}/confirm",
            body={"amount": amount, "currency": currency},
            read=self._timeouts.linepay_capture,
        )
        return PayResult(
            transaction_id=_tx(info, transaction_id), paid_amount=_amount_sum(info.get("payInfo"))
        )

    async def online_details(self, order_id: str) -> OrderDetails:
        """GET /v3/payments?orderId=: a confirmed payment, or NOT_FOUND when none was confirmed."""
        try:
            return await self._details("/v3/payments", order_id, None)
        except LinePayRejected as exc:
            if exc.code in ("1150", "1159"):
                return OrderDetails(status="NOT_FOUND")
            raise

    async def refund_online(self, transaction_id: str, amount: int | None) -> None:
        body: dict[str, Any] = {} if amount is None else {"refundAmount": amount}
        await self._call(
            "POST", f"/v3/payments/{transaction_id}/refund", body=body, read=self._timeouts.linepay_capture
        )

    # ------------------------------------------------------------------ wire

    async def _details(self, path: str, order_id: str, status: CheckStatus | None) -> OrderDetails:
        info = await self._call("GET", path, query={"orderId": order_id}, read=self._timeouts.linepay_check)
        rows = info if isinstance(info, list) else info.get("list", [])
        if not rows:
            return OrderDetails(status=status or "NOT_FOUND")
        row = rows[0]
        paid = _amount_sum(row.get("payInfo"))
        refunded = _refund_sum(row.get("refundList"))
        if status is None:
            status = "REFUND" if refunded >= paid > 0 else "COMPLETE"
        return OrderDetails(
            status=status, transaction_id=_tx(row), paid_amount=paid, refunded_amount=refunded
        )

    def headers(self, path: str, payload: str) -> dict[str, str]:
        """The authentication headers for one request (a fresh nonce each time), plus the
        device pair on offline calls (LINE documents it for the offline API only)."""
        nonce = self._nonce()
        secret = self._config.channel_secret.get_secret_value()
        headers = {
            "Content-Type": "application/json",
            "X-LINE-ChannelId": self._config.channel_id,
            "X-LINE-Authorization-Nonce": nonce,
            "X-LINE-Authorization": signature(secret, path, payload, nonce),
        }
        if self.device_profile_id and path.startswith("/v4/payments"):
            headers["X-LINE-MerchantDeviceProfileId"] = self.device_profile_id
            headers["X-LINE-MerchantDeviceType"] = self._config.merchant_device_type
        return headers

    def _timeout(self, read: float) -> aiohttp.ClientTimeout:
        """One call's timeouts: `sock_connect` bounds TCP and TLS, `sock_read` each wait for data.
        `connect` also bounds DNS and the wait for a pooled connection, so a call reaches LINE
        within the connect timeout, as the payment flow's settle window (connect + read) assumes."""
        connect = self._timeouts.linepay_connect
        return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        read: float,
    ) -> Any:
        data: bytes | None = None
        if method == "POST":
            text = json.dumps(body or {}, ensure_ascii=False, separators=(",", ":"))
            data = text.encode("utf-8")
            headers = self.headers(path, text)
            url = self.base + path
        else:
            qs = urlencode(query or {})
            headers = self.headers(path, qs)
            url = self.base + path + (f"?{qs}" if qs else "")
        with _map_errors():
            async with self._http().request(
                method,
                URL(url, encoded=True),  # sent as signed: no requoting of the path or query
                data=data,
                headers=headers,
                timeout=self._timeout(read),
                allow_redirects=False,  # a signed call is for this path only
                middlewares=(_single_attempt(),),
            ) as response:
                status = response.status
                if status >= 500:
                    raise LinePayOutcomeUnknown(f"LINE Pay answered HTTP {status}")
                content = await response.read()
            answer = json.loads(content, parse_float=Decimal)
        if not isinstance(answer, dict) or "returnCode" not in answer:
            raise LinePayOutcomeUnknown(f"LINE Pay answered HTTP {status} without a returnCode")
        code = str(answer["returnCode"])
        if code != "0000":
            raise LinePayRejected(code, str(answer.get("returnMessage", "")))
        return answer.get("info", {})


def _package(order_id: str, amount: int, product_name: str) -> dict[str, Any]:
    return {
        "id": order_id[:50],
        "amount": amount,
        "name": product_name[:100],
        "products": [{"name": product_name[:4000], "quantity": 1, "price": amount}],
    }


def _tx(info: Any, default: str | None = None) -> str:
    value = info.get("transactionId") if isinstance(info, Mapping) else None
    if value is None:
        if default is not None:
            return default
        raise LinePayOutcomeUnknown("answer has no transactionId")
    return str(value)


class _NotResent(aiohttp.ClientConnectionError):
    """aiohttp wanted to send a request again after its connection dropped."""


def _single_attempt() -> aiohttp.ClientMiddlewareType:
    """A per-call middleware that lets its request through once.

    aiohttp resends an idempotent request (a GET check) once when its connection drops, with the
    same headers: the nonce LINE may already have seen would come back as 1106, a refusal where
    the truth is "unknown". Refusing the resend keeps a dropped call a dropped call.
    """
    sent = False

    async def once(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        nonlocal sent
        if sent:
            raise _NotResent("connection dropped; not resent (the nonce is single-use)")
        sent = True
        return await handler(request)

    return once


@contextlib.contextmanager
def _map_errors() -> Iterator[None]:
    """Every transport failure becomes LinePayOutcomeUnknown: whether LINE acted is unknown."""
    try:
        yield
    except TimeoutError as exc:  # aiohttp's timeouts are TimeoutError (and some ClientError too)
        raise LinePayOutcomeUnknown(f"LINE Pay timed out: {type(exc).__name__}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise LinePayOutcomeUnknown(f"LINE Pay connection failed: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise LinePayOutcomeUnknown(f"LINE Pay answer is not JSON: {exc}") from exc
