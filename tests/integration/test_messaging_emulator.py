"""The Messaging API emulator, driven through line-bot-sdk v3 as the agent drives LINE."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    PushMessageRequest,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.messaging.exceptions import ApiException

from emulators.messaging import Fault, MessagingEmulator, running_emulator

USER = "U" + "a" * 32
STRANGER = "U" + "b" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def emu(clock: Clock) -> AsyncIterator[tuple[MessagingEmulator, str]]:
    emulator = MessagingEmulator(access_tokens={"good"}, clock=clock, quota_value=3)
    emulator.add_friend(USER)
    async with running_emulator(emulator) as pair:
        yield pair


def api(base: str, token: str = "good") -> AsyncApiClient:
    return AsyncApiClient(Configuration(host=base, access_token=token))


def push(text: str = "hi", to: str = USER) -> PushMessageRequest:
    return PushMessageRequest(to=to, messages=[TextMessage(text=text)])


async def test_bearer_token_is_checked(emu: tuple[MessagingEmulator, str]) -> None:
    _, base = emu
    async with api(base, "wrong") as client:
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).push_message(push(), _request_timeout=5)
    assert info.value.status == 401


async def test_push_retry_key_is_remembered_and_409_names_the_original(
    emu: tuple[MessagingEmulator, str], clock: Clock
) -> None:
    emulator, base = emu
    key = str(uuid.uuid4())
    async with api(base) as client:
        first = await AsyncMessagingApi(client).push_message_with_http_info(
            push(), x_line_retry_key=key, _request_timeout=5
        )
        assert first.status_code == 200
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).push_message(push(), x_line_retry_key=key, _request_timeout=5)
        assert info.value.status == 409
        assert info.value.headers["x-line-accepted-request-id"] == first.headers["x-line-request-id"]
        assert json.loads(info.value.body)["message"] == "The retry key is already accepted"
        clock.now += 24 * 3600 + 1  # forgotten after 24 h
        again = await AsyncMessagingApi(client).push_message_with_http_info(
            push(), x_line_retry_key=key, _request_timeout=5
        )
        assert again.status_code == 200
    assert len(emulator.deliveries_to(USER)) == 2


async def test_bad_retry_key_and_retry_key_on_reply_are_400(emu: tuple[MessagingEmulator, str]) -> None:
    emulator, base = emu
    token = emulator.issue_reply_token(USER)
    async with api(base) as client:
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).push_message(push(), x_line_retry_key="nope", _request_timeout=5)
        assert info.value.status == 400
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).reply_message(
                ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="x")]),
                _headers={"X-Line-Retry-Key": str(uuid.uuid4())},
                _request_timeout=5,
            )
        assert info.value.status == 400
    assert emulator.deliveries == []


async def test_reply_token_is_single_use_and_expires(
    emu: tuple[MessagingEmulator, str], clock: Clock
) -> None:
    emulator, base = emu
    token = emulator.issue_reply_token(USER)
    stale = emulator.issue_reply_token(USER)
    request = ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="welcome")])
    async with api(base) as client:
        await AsyncMessagingApi(client).reply_message(request, _request_timeout=5)
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).reply_message(request, _request_timeout=5)
        assert info.value.status == 400
        assert json.loads(info.value.body)["message"] == "Invalid reply token"
        clock.now += 61  # past LINE's one minute
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).reply_message(
                ReplyMessageRequest(reply_token=stale, messages=[TextMessage(text="x")]), _request_timeout=5
            )
        assert info.value.status == 400
        quota = await AsyncMessagingApi(client).get_message_quota_consumption(_request_timeout=5)
    assert [d.via for d in emulator.deliveries] == ["reply"]
    assert quota.total_usage == 0  # replies are free


async def test_monthly_limit_and_quota_endpoints(emu: tuple[MessagingEmulator, str]) -> None:
    _emulator, base = emu
    async with api(base) as client:
        line = AsyncMessagingApi(client)
        for _ in range(3):
            await line.push_message(push(), x_line_retry_key=str(uuid.uuid4()), _request_timeout=5)
        with pytest.raises(ApiException) as info:
            await line.push_message(push(), x_line_retry_key=str(uuid.uuid4()), _request_timeout=5)
        quota = await line.get_message_quota(_request_timeout=5)
        used = await line.get_message_quota_consumption(_request_timeout=5)
    assert info.value.status == 429
    assert json.loads(info.value.body)["message"] == "You have reached your monthly limit."
    assert (quota.type, quota.value, used.total_usage) == ("limited", 3, 3)


async def test_rate_limit_is_a_different_429(emu: tuple[MessagingEmulator, str]) -> None:
    emulator, base = emu
    emulator.rate_limit_per_s = 1
    async with api(base) as client:
        await AsyncMessagingApi(client).push_message(push(), _request_timeout=5)
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).push_message(push(), _request_timeout=5)
    assert info.value.status == 429
    assert json.loads(info.value.body)["message"] == "Too Many Requests"


async def test_unknown_user_is_400(emu: tuple[MessagingEmulator, str]) -> None:
    _, base = emu
    async with api(base) as client:
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).push_message(push(to=STRANGER), _request_timeout=5)
    assert info.value.status == 400
    assert json.loads(info.value.body)["message"] == "Failed to send messages"


async def test_fault_after_accept_then_retry_gets_409(emu: tuple[MessagingEmulator, str]) -> None:
    emulator, base = emu
    emulator.inject(Fault(kind="503", after_accept=True), Fault(kind="timeout", hang_s=0.5))
    key = str(uuid.uuid4())
    async with api(base) as client:
        line = AsyncMessagingApi(client)
        with pytest.raises(ApiException) as info:
            await line.push_message(push(), x_line_retry_key=key, _request_timeout=5)
        assert info.value.status == 503
        with pytest.raises(TimeoutError):
            await line.push_message(push(), x_line_retry_key=str(uuid.uuid4()), _request_timeout=0.2)
        with pytest.raises(ApiException) as info:
            await line.push_message(push(), x_line_retry_key=key, _request_timeout=5)
    assert info.value.status == 409
    assert len(emulator.deliveries) == 1


async def test_bot_info_and_coupons(emu: tuple[MessagingEmulator, str], clock: Clock) -> None:
    _, base = emu
    coupon = {
        "title": "歡迎禮",
        "startTimestamp": int(clock.now),
        "endTimestamp": int(clock.now) + 86400,
        "timezone": "ASIA_TAIPEI",
        "visibility": "UNLISTED",
        "maxUseCountPerTicket": 1,
        "acquisitionCondition": {"type": "normal"},
        "reward": {"type": "discount", "priceInfo": {"type": "fixed", "fixedAmount": 30}},
    }
    headers = {"Authorization": "Bearer good"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/v2/bot/coupon", json=coupon) as response:
            assert response.status == 200
            coupon_id = (await response.json())["couponId"]
        async with http.get(f"{base}/v2/bot/coupon/{coupon_id}") as response:
            assert (await response.json())["status"] == "RUNNING"
        async with http.post(f"{base}/v2/bot/coupon", json={**coupon, "maxUseCountPerTicket": 2}) as response:
            assert response.status == 400
            assert (await response.json())["details"][0]["property"] == "maxUseCountPerTicket"
        async with http.get(f"{base}/v2/bot/coupon/nope") as response:
            assert response.status == 404
    async with api(base) as client:
        info = await AsyncMessagingApi(client).get_bot_info(_request_timeout=5)
    assert info.basic_id == "@shopedge"


async def test_control_api_issues_tokens_and_faults(emu: tuple[MessagingEmulator, str]) -> None:
    _emulator, base = emu
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/_emulator/reply-token", json={"userId": USER}) as response:
            token = (await response.json())["replyToken"]
        async with http.post(f"{base}/_emulator/fault", json={"kind": "500"}) as response:
            assert (await response.json())["pending"] == 1
        async with http.post(f"{base}/_emulator/fault", json={"bogus": 1}) as response:
            assert response.status == 400
    async with api(base) as client:
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).push_message(push(), _request_timeout=5)
        assert info.value.status == 500
        await AsyncMessagingApi(client).reply_message(
            ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="hi")]), _request_timeout=5
        )
    async with aiohttp.ClientSession() as http, http.get(f"{base}/_emulator/state") as response:
        state = await response.json()
    assert [d["via"] for d in state["deliveries"]] == ["reply"]
