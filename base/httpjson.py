"""JSON over HTTP for every ShopEdge aiohttp app (the POS API with its coupon and ops routes,
the webhook relay): one middleware that refuses bodies that are not `application/json`, one
way to read a body (the bounded reader, `base.jsonread`), one error shape.

Each app installs `json_only()` once, so a route added later cannot forget the check, and reads
bodies with `read_json_body`, so a deep, huge or non-JSON body is a 4xx that names the problem
(`{"error": code, "message": text}`), never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from base.jsonread import JsonInputError, read_json

__all__ = ["error_response", "json_only", "read_json_body"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    """The one error body: `{"error": code, "message": text}`."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers or None)


def _http_error(cls: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": code, "message": message}), content_type="application/json")


def json_only() -> Middleware:
    """A middleware refusing a request body that is not declared `application/json` (415).

    A request without a body (a bare POST to `/cancel`) passes whatever its content type.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        declared = request.content_type
        if request.method in _WITH_BODY and request.body_exists and declared != "application/json":
            given = request.headers.get("Content-Type", "") or "none"
            return error_response(
                415, "unsupported_media_type", f"Content-Type must be application/json, got {given!r}"
            )
        return await handler(request)

    return middleware


async def read_json_body(request: web.Request, *, max_bytes: int, empty: Any = None) -> Any:
    """The request body as JSON; `empty` for no body at all.

    Raises:
        web.HTTPBadRequest: the body is not JSON within the limits (JSON body, code `malformed_json`).
    """
    raw = await request.read()
    if not raw:
        return empty
    try:
        return read_json(raw, max_bytes=max_bytes)
    except JsonInputError as exc:
        raise _http_error(web.HTTPBadRequest, "malformed_json", str(exc)) from None
