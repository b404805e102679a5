"""Coupon redemption at the till: `POST /v1/coupons/redeem` on the POS API.

Owns the route (mounted by the coordinator with `add_coupon_routes(app, ctx)`), its request and
answer shapes, and recording the redemption as a funnel fact. A code redeems once: the ledger's
conditional update decides, so two tills scanning the same phone cannot both succeed.

Request: `{"code": "7SGNW-90BVA", "order_id": "optional till order"}` with the POS bearer token.
Answers: 200 redeemed; 400 bad request; 401 bad token; 404 unknown code; 409 already redeemed or
never delivered; 410 expired; 422 not a code (wrong length or check digit: a typo).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiohttp import web

from base.jsonread import JsonInputError, read_json
from membership.context import MembershipContext
from membership.coupons._events import offer_coupon_event
from membership.coupons._funnel import Fact, FactKind
from membership.coupons._ledger import RedeemStatus, redeem_blocking
from membership.coupons._policy import normalize_code
from membership.coupons._service import record_fact

__all__ = ["REDEEM_PATH", "add_coupon_routes"]

log = logging.getLogger(__name__)

REDEEM_PATH = "/v1/coupons/redeem"
_CTX = web.AppKey("shopedge.coupons.ctx", MembershipContext)
_STATUS = {
    RedeemStatus.REDEEMED: 200,
    RedeemStatus.UNKNOWN_CODE: 404,
    RedeemStatus.ALREADY_REDEEMED: 409,
    RedeemStatus.NOT_DELIVERED: 409,
    RedeemStatus.EXPIRED: 410,
}
_MESSAGES = {
    RedeemStatus.REDEEMED: "優惠券已兌換 Coupon redeemed",
    RedeemStatus.UNKNOWN_CODE: "查無此優惠碼 No such coupon code",
    RedeemStatus.ALREADY_REDEEMED: "優惠券已使用過 This coupon was already redeemed",
    RedeemStatus.NOT_DELIVERED: "優惠券尚未發送 This coupon was never delivered",
    RedeemStatus.EXPIRED: "優惠券已過期 This coupon has expired",
}


def add_coupon_routes(app: web.Application, ctx: MembershipContext) -> None:
    """Mount the coupon routes on the POS API app."""
    app[_CTX] = ctx
    app.router.add_post(REDEEM_PATH, _redeem)


MAX_REDEEM_BODY = 4096  # a code and an order id


def _problem(status: int, error: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=status)


async def _redeem(request: web.Request) -> web.Response:
    ctx = request.app[_CTX]
    expected = ctx.config.pos.token.get_secret_value()
    if not expected:  # same rule as the POS API: no token configured, no redemption
        return _problem(401, "unauthorized", "pos.token is not configured on this device")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        return _problem(401, "unauthorized", "missing or wrong POS bearer token")
    try:
        body = read_json(await request.read(), max_bytes=MAX_REDEEM_BODY)
    except JsonInputError as exc:
        return _problem(400, "bad_request", f"the body must be JSON: {exc}")
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return _problem(400, "bad_request", 'the body must be {"code": "...", "order_id": "..."}')
    order_id = body.get("order_id")
    if order_id is not None and (not isinstance(order_id, str) or not 0 < len(order_id) <= 64):
        return _problem(400, "bad_request", "order_id must be a string of 1 to 64 characters")
    code = normalize_code(body["code"])
    if code is None:
        return _problem(422, "invalid_code", "不是有效的優惠碼 Not a coupon code (check for a typo)")
    now = ctx.wall_clock()
    valid_s = {c.name: c.valid_days * 86400.0 for c in ctx.config.campaigns}
    status, row = await asyncio.to_thread(
        redeem_blocking, ctx.db, code, now=now, order_id=order_id, valid_s=valid_s
    )
    log.info("coupon redeem", extra={"result": status.value, "campaign": row.campaign if row else None})
    if status is not RedeemStatus.REDEEMED or row is None:
        extra = {"redeemed_at": row.redeemed_at} if row and row.redeemed_at else {}
        return _problem(_STATUS[status], status.value, _MESSAGES[status], **extra)
    fact = Fact(
        kind=FactKind.COUPON_REDEEMED,
        store_id=ctx.config.device.store_id,
        device_id=ctx.config.device.device_id,
        at=now,
        order_id=row.order_id,
        line_user_id=row.line_user_id,
        campaign=row.campaign,
    )
    if await record_fact(ctx, fact):
        await offer_coupon_event(ctx.services.get("outbox"), fact)
    campaign = next((c for c in ctx.config.campaigns if c.name == row.campaign), None)
    return web.json_response(
        {
            "status": status.value,
            "message": _MESSAGES[status],
            "code": code,
            "campaign": row.campaign,
            "offer": campaign.offer if campaign else "",
            "redeemed_at": now,
        }
    )
