"""A strict stand-in for the one LINE Pay endpoint the doctor calls, used until the LINE Pay
emulator (`emulators/linepay/`) lands on main: it enforces the documented behaviour rather than
accepting anything.

`GET /v4/payments/orders/{orderId}/check` verifies X-LINE-ChannelId and the v4 HMAC
(Base64(HMAC-SHA256(secret, secret + path + query + nonce))) -> 1106 on any auth fault, else
1150 "no history" for an order it never saw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web

CHANNEL_ID = "1234567890"
CHANNEL_SECRET = "fake-linepay-channel-secret"


async def check(request: web.Request) -> web.Response:
    nonce = request.headers.get("X-LINE-Authorization-Nonce", "")
    given = request.headers.get("X-LINE-Authorization", "")
    message = CHANNEL_SECRET + request.path + request.query_string + nonce
    expected = base64.b64encode(
        hmac.new(CHANNEL_SECRET.encode(), message.encode(), hashlib.sha256).digest()
    ).decode()
    if (
        request.headers.get("X-LINE-ChannelId") != CHANNEL_ID
        or not nonce
        or not hmac.compare_digest(given, expected)
    ):
        return web.json_response({"returnCode": "1106", "returnMessage": "Header information error."})
    return web.json_response({"returnCode": "1150", "returnMessage": "Transaction record not found."})


def linepay_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/v4/payments/orders/{order_id}/check", check)
    return app
