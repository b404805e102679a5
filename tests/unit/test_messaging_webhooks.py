"""The webhook emulator builds bodies LINE's own SDK accepts, signed as LINE signs them."""

from __future__ import annotations

import pytest
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    AccountLinkEvent,
    BeaconEvent,
    FollowEvent,
    MessageEvent,
    TextMessageContent,
    UnfollowEvent,
)

from emulators.messaging.webhooks import (
    account_link_event,
    beacon_event,
    follow_event,
    new_user_id,
    redelivered,
    sign,
    text_message_event,
    unfollow_event,
    webhook_body,
    webhook_event_id,
)

SECRET = "0123456789abcdef0123456789abcdef"


def test_sdk_parses_every_event_kind() -> None:
    user = new_user_id()
    events = [
        follow_event(user),
        text_message_event(user, "JOIN 入會ABC"),
        beacon_event(user, "0123456789", dm="00"),
        unfollow_event(user),
        account_link_event(user, "n" * 16),
        account_link_event(user, "n" * 16, ok=False),
    ]
    body = webhook_body(events, "U" + "f" * 32)
    parsed = WebhookParser(SECRET).parse(body, sign(body, SECRET))
    kinds = [type(e) for e in parsed]
    assert kinds == [
        FollowEvent,
        MessageEvent,
        BeaconEvent,
        UnfollowEvent,
        AccountLinkEvent,
        AccountLinkEvent,
    ]
    message = parsed[1]
    assert isinstance(message, MessageEvent) and isinstance(message.message, TextMessageContent)
    assert message.message.text == "JOIN 入會ABC"
    assert message.reply_token and len(message.reply_token) == 32
    assert not message.delivery_context.is_redelivery
    assert parsed[2].beacon.hwid == "0123456789"  # type: ignore[attr-defined]
    assert "replyToken" not in events[3] and "replyToken" not in events[5]
    assert {e["webhookEventId"] for e in events} == {e.webhook_event_id for e in parsed}


def test_bad_signatures_are_refused_by_the_sdk() -> None:
    body = webhook_body([follow_event(new_user_id())], "U" + "0" * 32)
    with pytest.raises(InvalidSignatureError):
        WebhookParser(SECRET).parse(body, sign(body, "another-secret"))
    with pytest.raises(InvalidSignatureError):
        WebhookParser(SECRET).parse(body + " ", sign(body, SECRET))


def test_redelivery_keeps_the_event_id() -> None:
    event = text_message_event(new_user_id(), "hi", timestamp_ms=1_700_000_000_000)
    again = redelivered(event)
    assert again["webhookEventId"] == event["webhookEventId"]
    assert again["deliveryContext"] == {"isRedelivery": True}
    assert event["deliveryContext"] == {"isRedelivery": False}


def test_event_ids_are_time_ordered_ulids() -> None:
    first, second = webhook_event_id(1_700_000_000_000), webhook_event_id(1_700_000_000_001)
    assert len(first) == 26 and first[:10] < second[:10]


@pytest.mark.parametrize("hwid", ["0123", "0123456789AB", "ABCDEF0123"])
def test_bad_hwid_is_refused(hwid: str) -> None:
    with pytest.raises(ValueError, match="hwid"):
        beacon_event(new_user_id(), hwid)
