"""Strict stand-ins for the two LINE endpoints the doctor calls, used until the emulators in
`emulators/` land: they enforce the documented behaviour rather than accepting anything.

- `GET /v2/bot/info`: 401 with LINE's message unless `Authorization: Bearer <the token>`.
- `GET /v4/payments/orders/{orderId}/check`: verifies X-LINE-ChannelId and the v4 HMAC
  (Base64(HMAC-SHA256(secret, secret + path + query + nonce))) -> 1106 on any auth fault, else
  1150 "no history" for an order it never saw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web

TOKEN = "fake-channel-access-token-0123456789"
CHANNEL_ID = "1234567890"
CHANNEL_SECRET = "fake-linepay-channel-secret"


async def bot_info(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return web.json_response(
            {
                "message": "Authentication failed. Confirm that the access token in the authorization header is valid."
            },
            status=401,
        )
    return web.json_response(
        {
            "userId": "U" + "0" * 32,
            "basicId": "@shop123",
            "displayName": "Test Shop",
            "chatMode": "bot",
            "markAsReadMode": "auto",
        }
    )


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


def line_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/v2/bot/info", bot_info)
    app.router.add_get("/v4/payments/orders/{order_id}/check", check)
    return app
