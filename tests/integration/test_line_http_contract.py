"""The device's Messaging API client against the emulator, every exchange checked against LINE's
published OpenAPI document (tests/contracts/line/messaging-api.yml).

A recording middleware sits in front of the emulator's routes and keeps each request (method,
path, headers, JSON body) and the answer (status, JSON body). Each test drives the real client
(`LineMessaging`) with the messages the real policy builds, asserts what the client made of the
answer, and then every recorded exchange must pass `check_exchange`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from emulators.messaging.server import Fault, MessagingEmulator
from membership.config import CampaignConfig
from membership.coupons._line_http import LineMessaging, LineRefused, QuotaUnavailable
from membership.coupons._policy import Outcome, classify, coupon_create_request, coupon_messages, make_code
from tests.contracts.line_schema import ContractError, check_exchange

TOKEN = "contract-test-token"
FRIEND = "U" + "a" * 32
STRANGER = "U" + "b" * 32
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    request: Any
    status: int
    response: Any


@dataclass
class Recorded:
    emulator: MessagingEmulator
    url: str
    exchanges: list[Exchange] = field(default_factory=list)

    def client(self, *, timeout: float = 2.0, token: str = TOKEN) -> LineMessaging:
        return LineMessaging(api_base=self.url, access_token=token, timeout=timeout)

    def check_all(self) -> None:
        assert self.exchanges, "nothing was exchanged"
        for x in self.exchanges:
            check_exchange(x.method, x.path, x.headers, x.request, x.status, x.response)


@pytest.fixture
async def line() -> AsyncIterator[Recorded]:
    emulator = MessagingEmulator(access_tokens={TOKEN})
    emulator.add_friend(FRIEND)
    recorded = Recorded(emulator, "")

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        if not request.path.startswith("/_emulator/"):
            recorded.exchanges.append(
                Exchange(
                    method=request.method,
                    path=request.path,
                    headers=dict(request.headers),
                    request=json.loads(raw) if raw else None,
                    status=response.status,
                    response=json.loads(body) if isinstance(body, bytes) and body else None,
                )
            )
        return response

    app = emulator.app()
    app.middlewares.insert(0, record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorded.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield recorded
    finally:
        await runner.cleanup()


def _campaign(coupon_id: str = "") -> CampaignConfig:
    return CampaignConfig(name="welcome", coupon_id=coupon_id, offer="NT$30 off", title="Welcome gift")


def _welcome(coupon_id: str = "", barcode_url: str = "") -> list[dict[str, Any]]:
    return coupon_messages(
        _campaign(coupon_id), make_code(), valid_until=date(2026, 12, 31), barcode_url=barcode_url
    )


async def test_reply_with_the_welcome_card_follows_the_document(line: Recorded) -> None:
    token = line.emulator.issue_reply_token(FRIEND)
    async with line.client() as client:
        sent = await client.reply(token, _welcome())
        again = await client.reply(token, _welcome())  # single use
    assert sent.status == 200 and sent.request_id
    assert classify(sent) is Outcome.SENT
    assert again.status == 400 and classify(again) is Outcome.INVALID_REPLY_TOKEN
    assert [d.via for d in line.emulator.deliveries] == ["reply"]
    line.check_all()


async def test_push_with_retry_key_then_resend_is_409_with_the_first_request_id(line: Recorded) -> None:
    key = str(uuid.uuid4())
    messages = _welcome(coupon_id="coupon-1", barcode_url="https://img.example/bar/{code}.png")
    async with line.client() as client:
        first = await client.push(FRIEND, messages, key)
        resend = await client.push(FRIEND, messages, key)
    assert first.status == 200 and classify(first) is Outcome.SENT
    assert resend.status == 409 and classify(resend) is Outcome.ALREADY_SENT
    assert resend.accepted_request_id == first.request_id
    assert line.emulator.deliveries[0].retry_key == key
    assert line.exchanges[0].headers["X-Line-Retry-Key"] == key
    line.check_all()


async def test_push_refusals_keep_line_s_message(line: Recorded) -> None:
    line.emulator.set_quota(value=1, usage=1)
    async with line.client() as client:
        stranger = await client.push(STRANGER, _welcome(), str(uuid.uuid4()))
        line.emulator.set_quota(value=1, usage=1)
        limited = await client.push(FRIEND, _welcome(), str(uuid.uuid4()))
    assert classify(limited) is Outcome.MONTHLY_LIMIT
    assert limited.message == "You have reached your monthly limit."
    assert stranger.status == 429  # the monthly limit is checked before the recipient
    line.check_all()


async def test_unknown_user_is_rejected(line: Recorded) -> None:
    async with line.client() as client:
        answer = await client.push(STRANGER, _welcome(), str(uuid.uuid4()))
    assert answer.status == 400 and answer.message == "Failed to send messages"
    assert classify(answer) is Outcome.REJECTED
    line.check_all()


async def test_bad_token_is_401(line: Recorded) -> None:
    async with line.client(token="not-the-token") as client:
        answer = await client.push(FRIEND, _welcome(), str(uuid.uuid4()))
    assert answer.status == 401 and classify(answer) is Outcome.UNAUTHORIZED
    # 401 is answered by LINE on every endpoint but not declared per operation in the document


@pytest.mark.parametrize(("quota_type", "value"), [("limited", 200), ("none", None)])
async def test_quota_reads_both_calls(line: Recorded, quota_type: str, value: int | None) -> None:
    line.emulator.set_quota(quota_type=quota_type, value=value, usage=7)
    async with line.client() as client:
        quota = await client.quota()
    assert quota.limited is (quota_type == "limited")
    assert quota.value == (value or 0) and quota.used == 7
    assert [x.path for x in line.exchanges] == ["/v2/bot/message/quota", "/v2/bot/message/quota/consumption"]
    line.check_all()


async def test_quota_failure_is_quota_unavailable(line: Recorded) -> None:
    line.emulator.inject(Fault(endpoint="quota", kind="500"))
    async with line.client() as client:
        with pytest.raises(QuotaUnavailable) as raised:
            await client.quota()
    assert raised.value.answer.status == 500


async def test_create_coupon_with_the_policy_s_body(line: Recorded) -> None:
    body = coupon_create_request(_campaign(), now=1_790_000_000.0, zone="Asia/Taipei")
    async with line.client() as client:
        coupon_id = await client.create_coupon(body)
        with pytest.raises(LineRefused) as refused:
            await client.create_coupon({**body, "timezone": "MARS_OLYMPUS"})
    assert coupon_id
    assert refused.value.answer.status == 400
    good, bad = line.exchanges
    check_exchange(good.method, good.path, good.headers, good.request, good.status, good.response)
    with pytest.raises(ContractError, match="timezone"):  # the emulator and LINE's document agree
        check_exchange(bad.method, bad.path, bad.headers, bad.request, bad.status, bad.response)


async def test_no_answer_is_status_0_and_leaves_no_exchange_to_trust(line: Recorded) -> None:
    line.emulator.inject(Fault(endpoint="push", kind="timeout", hang_s=2.0))
    async with line.client(timeout=0.3) as client:
        answer = await client.push(FRIEND, _welcome(), str(uuid.uuid4()))
    assert answer.status == 0 and answer.message.startswith("no answer")
    assert classify(answer) is Outcome.UNKNOWN


def test_the_contract_catches_drift() -> None:
    """The checker is not a rubber stamp: an undeclared field, a wrong type, a bad key fail."""
    good = {"to": FRIEND, "messages": [{"type": "text", "text": "hi"}]}
    check_exchange("POST", "/v2/bot/message/push", {}, good, 200, {"sentMessages": [{"id": "1"}]})
    bad_cases: list[tuple[dict[str, str], Any, int, Any]] = [
        ({}, {**good, "notifcationDisabled": True}, 200, {"sentMessages": []}),
        ({}, {"to": FRIEND, "messages": [{"type": "text", "txt": "hi"}]}, 200, {"sentMessages": []}),
        ({}, {"to": FRIEND, "messages": [{"type": "telegram", "text": "hi"}]}, 200, {"sentMessages": []}),
        ({}, good, 200, {"sentMessages": "none"}),
        ({"X-Line-Retry-Key": "not-a-uuid"}, good, 200, {"sentMessages": []}),
        ({}, good, 418, None),
    ]
    for headers, body, status, answer in bad_cases:
        with pytest.raises(ContractError):
            check_exchange("POST", "/v2/bot/message/push", headers, body, status, answer)
    with pytest.raises(ContractError):
        check_exchange(
            "POST",
            "/v2/bot/message/reply",
            {"X-Line-Retry-Key": str(uuid.uuid4())},
            {"replyToken": "t", "messages": [{"type": "text", "text": "hi"}]},
            200,
            {"sentMessages": []},
        )
    flex = _welcome()[0]
    flex["contents"]["body"]["contents"][0]["colour"] = "#000000"
    with pytest.raises(ContractError):
        check_exchange("POST", "/v2/bot/message/push", {}, {"to": FRIEND, "messages": [flex]}, 200, None)


def test_the_daemon_s_path_never_imports_line_bot_sdk() -> None:
    code = (
        "import sys, agent.daemon, agent.wiring, membership.coupons, membership.conversion, agent.sync;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('linebot', 'alembic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "linebot" not in out.stdout, out.stdout
