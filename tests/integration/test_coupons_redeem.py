"""`POST /v1/coupons/redeem` over real HTTP on 127.0.0.1 against a real SQLite ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from membership.coupons import FactKind, LedgerState, facts_since_blocking, make_code
from membership.coupons._ledger import claim_blocking, transition_blocking
from membership.coupons._redeem import add_coupon_routes

NOW = 1_790_000_000.0
TOKEN = "pos-secret"


class Clock:
    now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def till(tmp_path: Path) -> AsyncIterator[tuple[str, AgentContext, Clock]]:
    config = parse_config(
        {"device": {"store_id": "store-001", "device_id": "counter-1"}, "pos": {"token": TOKEN}}, environ={}
    )
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    clock = Clock()
    ctx = AgentContext(config=config, db=db, wall_clock=clock)
    app = web.Application()
    add_coupon_routes(app, ctx)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/v1/coupons/redeem")), ctx, clock
    finally:
        await server.close()
        db.close()


def issue(ctx: AgentContext, n: int, *, sent: bool = True) -> str:
    code = make_code()
    user = f"U{n:032x}"
    claim_blocking(
        ctx.db,
        campaign="welcome",
        line_user_id=user,
        code=code,
        retry_key=f"00000000-0000-0000-0000-{n:012d}",
        store_id="store-001",
        device_id="counter-1",
        order_id=f"order-{n}",
        reply_token=None,
        now=NOW - 60,
    )
    if sent:
        transition_blocking(
            ctx.db,
            "welcome",
            user,
            from_states=(LedgerState.CLAIMED,),
            to_state=LedgerState.SENT,
            now=NOW - 60,
            channel="reply",
            sent_at=NOW - 60,
        )
    return code


async def post(url: str, body: object, token: str = TOKEN) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_a_code_redeems_once(till: tuple[str, AgentContext, Clock]) -> None:
    url, ctx, _ = till
    code = issue(ctx, 1)
    status, body = await post(url, {"code": f"{code[:5].lower()}-{code[5:]}", "order_id": "till-9"})
    assert (status, body["status"], body["code"]) == (200, "redeemed", code)
    status, body = await post(url, {"code": code})
    assert (status, body["error"], body["redeemed_at"]) == (409, "already_redeemed", NOW)
    facts = [f for f in facts_since_blocking(ctx.db, 0) if f.kind is FactKind.COUPON_REDEEMED]
    assert [(f.order_id, f.store_id) for f in facts] == [("order-1", "store-001")]


async def test_two_tills_scanning_together_redeem_once(till: tuple[str, AgentContext, Clock]) -> None:
    url, ctx, _ = till
    code = issue(ctx, 2)
    results = await asyncio.gather(*(post(url, {"code": code}) for _ in range(10)))
    assert sorted(status for status, _ in results) == [200] + [409] * 9


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"code": "ZZZZZZZZZZ"}, 422, "invalid_code"),
        ({"code": 12}, 400, "bad_request"),
        ({"nope": 1}, 400, "bad_request"),
        ({"code": "x", "order_id": ""}, 400, "bad_request"),
    ],
)
async def test_bad_requests(
    till: tuple[str, AgentContext, Clock], body: object, status: int, error: str
) -> None:
    url, _, _ = till
    got, answer = await post(url, body)
    assert (got, answer["error"]) == (status, error)


async def test_unknown_undelivered_expired_and_unauthorized(till: tuple[str, AgentContext, Clock]) -> None:
    url, ctx, clock = till
    assert (await post(url, {"code": make_code()}))[0] == 404
    assert (await post(url, {"code": issue(ctx, 3, sent=False)}))[1]["error"] == "not_delivered"
    code = issue(ctx, 4)
    assert (await post(url, {"code": code}, token="wrong"))[0] == 401
    clock.now = NOW + 31 * 86400  # valid_days = 30
    status, body = await post(url, {"code": code})
    assert (status, body["error"]) == (410, "expired")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{", headers=headers) as response:
        assert response.status == 400


async def test_no_pos_token_configured_means_no_redemption(till: tuple[str, AgentContext, Clock]) -> None:
    url, ctx, _ = till
    code = issue(ctx, 5)
    pos = ctx.config.pos.model_copy(update={"token": SecretStr("")})
    ctx.config = ctx.config.model_copy(update={"pos": pos})
    status, body = await post(url, {"code": code}, token="")
    assert (status, body["error"]) == (401, "unauthorized")
    assert "not configured" in str(body["message"])
