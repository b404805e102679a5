"""The Messaging emulator follows three more of LINE's documented rules (issue 14, item 8):
a push to a user who blocked the account is accepted (200) but reaches no phone and is not
counted; text length is counted in UTF-16 code units; `textV2` with its `substitution` is accepted.
Driven through line-bot-sdk v3, the client the agent uses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from linebot.v3.messaging import (
    AllMentionTarget,
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    EmojiSubstitutionObject,
    MentionSubstitutionObject,
    PushMessageRequest,
    TextMessage,
    TextMessageV2,
    UserMentionTarget,
)

from emulators.messaging import MessagingEmulator, running_emulator
from emulators.messaging.validation import utf16_length

USER = "U" + "a" * 32
BLOCKER = "U" + "c" * 32


@pytest.fixture
async def emu() -> AsyncIterator[tuple[MessagingEmulator, str]]:
    emulator = MessagingEmulator(access_tokens={"good"}, quota_value=10)
    emulator.add_friend(USER)
    async with running_emulator(emulator) as pair:
        yield pair


def api(base: str) -> AsyncMessagingApi:
    return AsyncMessagingApi(AsyncApiClient(Configuration(host=base, access_token="good")))


async def _raw_push(base: str, body: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.post(f"{base}/v2/bot/message/push", json=body, headers={"Authorization": "Bearer good"}) as r,
    ):
        return r.status, await r.json()


async def test_push_to_a_user_who_blocked_the_account_is_accepted_not_delivered(
    emu: tuple[MessagingEmulator, str],
) -> None:
    emulator, base = emu
    async with (  # over the control API, as the demo would
        aiohttp.ClientSession() as http,
        http.post(f"{base}/_emulator/block", json={"userId": BLOCKER}) as r,
    ):
        assert r.status == 200
    client = api(base)
    try:
        answer = await client.push_message(
            PushMessageRequest(to=BLOCKER, messages=[TextMessage(text="welcome coupon")]), _request_timeout=5
        )
        assert len(answer.sent_messages) == 1
        assert emulator.deliveries_to(BLOCKER) == []  # no phone shows it
        assert [d.to for d in emulator.undelivered] == [BLOCKER]
        assert emulator.total_usage == 0  # only deliverable messages are counted
        emulator.add_friend(BLOCKER)  # unblocks (a follow event with isUnblocked)
        await client.push_message(
            PushMessageRequest(to=BLOCKER, messages=[TextMessage(text="again")]), _request_timeout=5
        )
        assert [d.messages[0]["text"] for d in emulator.deliveries_to(BLOCKER)] == ["again"]
        assert emulator.total_usage == 1
    finally:
        await client.api_client.close()


def test_text_length_is_counted_in_utf16_code_units() -> None:
    assert utf16_length("abc") == 3
    assert utf16_length("門市") == 2  # BMP CJK: one unit each
    assert utf16_length("🍎") == 2  # outside the BMP: a surrogate pair
    assert utf16_length("\r\n") == 2
    assert utf16_length("𠮷野家") == 4


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("a" * 5000, 200),
        ("a" * 5001, 400),
        ("🍎" * 2500, 200),  # 2500 code points, 5000 units
        ("🍎" * 2500 + "a", 400),  # 2501 code points: a code-point count would let it through
        ("a" * 4999 + "🍎", 400),  # 5000 code points, 5001 units
        ("", 400),
    ],
)
async def test_text_limit_is_5000_utf16_units(
    emu: tuple[MessagingEmulator, str], text: str, status: int
) -> None:
    _, base = emu
    for kind in ("text", "textV2"):
        got, body = await _raw_push(base, {"to": USER, "messages": [{"type": kind, "text": text}]})
        assert got == status, (kind, len(text), body)
        if status == 400:
            assert body["details"] == [  # type: ignore[comparison-overlap]
                {"property": "messages[0].text", "message": "must be 1 to 5000 characters"}
            ]


async def test_text_v2_with_substitutions_is_accepted(emu: tuple[MessagingEmulator, str]) -> None:
    emulator, base = emu
    message = TextMessageV2(
        text="{user} {everyone} here is your coupon {gift}",
        substitution={
            "user": MentionSubstitutionObject(mentionee=UserMentionTarget(userId=USER)),
            "everyone": MentionSubstitutionObject(mentionee=AllMentionTarget()),
            "gift": EmojiSubstitutionObject(productId="5ac1bfd5040ab15980c9b435", emojiId="001"),
        },
    )
    client = api(base)
    try:
        answer = await client.push_message(
            PushMessageRequest(to=USER, messages=[message]), _request_timeout=5
        )
    finally:
        await client.api_client.close()
    assert len(answer.sent_messages) == 1
    (delivery,) = emulator.deliveries_to(USER)
    sent = delivery.messages[0]
    assert sent["type"] == "textV2" and sent["substitution"]["gift"]["emojiId"] == "001"


@pytest.mark.parametrize(
    ("substitution", "property"),
    [
        ("not an object", "messages[0].substitution"),
        ({"u": {"type": "sticker"}}, "messages[0].substitution.u.type"),
        ({"u": {"type": "mention"}}, "messages[0].substitution.u.mentionee.type"),
        (
            {"u": {"type": "mention", "mentionee": {"type": "user"}}},
            "messages[0].substitution.u.mentionee.userId",
        ),
        (
            {"u": {"type": "mention", "mentionee": {"type": "group"}}},
            "messages[0].substitution.u.mentionee.type",
        ),
        ({"e": {"type": "emoji", "productId": "p"}}, "messages[0].substitution.e.emojiId"),
    ],
)
async def test_text_v2_bad_substitution_is_400_naming_the_property(
    emu: tuple[MessagingEmulator, str], substitution: object, property: str
) -> None:
    _, base = emu
    status, body = await _raw_push(
        base, {"to": USER, "messages": [{"type": "textV2", "text": "hi {u}", "substitution": substitution}]}
    )
    assert status == 400, body
    assert [d["property"] for d in body["details"]] == [property]  # type: ignore[attr-defined]
    assert json.dumps(body)  # a JSON error body, as LINE's
