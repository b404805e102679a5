"""The webhook relay over real HTTP, publishing to a real Mosquitto: routing per event, batch
splitting, redelivery dedupe, 401 on bad signatures, 200 in time when the broker is away (the
event waits in the relay's outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from agent.config import ShopEdgeConfig, parse_config
from cloud.relay import ENVELOPE_NAMESPACE, run_relay
from emulators.messaging.webhooks import (
    account_link_event,
    beacon_event,
    follow_event,
    new_user_id,
    post_webhook,
    redelivered,
    sign,
    text_message_event,
    unfollow_event,
    webhook_body,
)
from membership.binding import URL_PROMPT, BindingClaims, encode_token
from tests.integration._broker import Collector, collecting, free_port, mosquitto

SECRET = "c0ffee" * 5 + "ab"
FLEET = "shopedge/v1/fleet/line_event"


def token_for(store: str, device: str, order: str, key: bytes = b"store-key") -> str:
    claims = BindingClaims(
        store_id=store, device_id=device, order_id=order, issued_at=int(time.time()), ttl_minutes=30
    )
    return encode_token(claims, key)


def relay_config(mqtt_port: int, state_dir: Path) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "cloud", "device_id": "relay-1"},
            "line": {"channel_secret": SECRET},
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
            "relay": {
                "state_dir": str(state_dir),
                "listen": f"127.0.0.1:{free_port()}",
                "beacon_stores": {"0123456789": "store-b", "abcdef0123": "store-c/till-9"},
            },
        },
        environ={},
    )


@dataclass
class Relay:
    url: str
    collector: Collector
    config: ShopEdgeConfig

    async def post(self, events: list[dict[str, object]], **kwargs: object) -> int:
        status, _ = await post_webhook(self.url, events, channel_secret=SECRET, **kwargs)  # type: ignore[arg-type]
        return status


async def wait_healthy(base: str) -> None:
    """Until the relay's /healthz says it is connected to the broker (10 s at most)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("relay never connected to the broker")


@contextlib.asynccontextmanager
async def running_relay(config: ShopEdgeConfig, *, wait_connected: bool = True) -> AsyncIterator[str]:
    started = asyncio.Event()
    task = asyncio.create_task(run_relay(config, started=started))
    base = f"http://{config.relay.listen}"
    try:
        await asyncio.wait_for(started.wait(), 10)
        if wait_connected:
            await wait_healthy(base)
        yield f"{base}/line/webhook"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    with mosquitto(tmp_path) as port:
        config = relay_config(port, tmp_path / "relay")
        async with collecting(port) as collector, running_relay(config) as url:
            yield Relay(url=url, collector=collector, config=config)


async def test_batch_is_split_and_each_event_routed(relay: Relay) -> None:
    shopper, other, stranger = new_user_id(), new_user_id(), new_user_id()
    token_a = token_for("store-a", "counter-1", "A-1")
    token_b = token_for("store-b", "counter-2", "B-7")
    events = [
        follow_event(shopper),
        text_message_event(shopper, URL_PROMPT + token_a),
        text_message_event(other, f"hi {token_b} thanks"),
        beacon_event(stranger, "0123456789"),
        beacon_event(stranger, "abcdef0123", beacon_type="stay"),
        beacon_event(stranger, "9999999999"),
        unfollow_event(other),
        text_message_event(stranger, "no token here"),
        account_link_event(shopper, token_for("store-a", "counter-3", "L-1")),
    ]
    assert await relay.post(events) == 200
    got = await relay.collector.wait_for(len(events))
    by_event = {msg["data"]["event"]["webhookEventId"]: (topic, msg) for topic, msg in got}
    expected = [
        FLEET,
        "shopedge/v1/store-a/counter-1/down/line_event",
        "shopedge/v1/store-b/counter-2/down/line_event",
        "shopedge/v1/store-b/_store/down/line_event",
        "shopedge/v1/store-c/till-9/down/line_event",
        FLEET,
        FLEET,
        FLEET,
        "shopedge/v1/store-a/counter-3/down/line_event",
    ]
    assert len(by_event) == len(events)
    assert relay.collector.qos == [1] * len(events)  # published at QoS 1 (subscribed at 1)
    for event, topic in zip(events, expected, strict=True):
        got_topic, msg = by_event[event["webhookEventId"]]
        assert got_topic == topic, event["type"]
        assert msg["data"]["event"] == event  # one event per message, never the batch
        assert msg["kind"] == "line_event"
        assert msg["id"] == str(uuid.uuid5(ENVELOPE_NAMESPACE, event["webhookEventId"]))
        assert msg["seq"] == event["timestamp"]
    assert by_event[events[1]["webhookEventId"]][1]["data"]["relay"]["new_follower"] is True
    assert by_event[events[2]["webhookEventId"]][1]["data"]["relay"]["new_follower"] is False


async def test_redelivery_is_dropped(relay: Relay) -> None:
    user = new_user_id()
    first = text_message_event(user, URL_PROMPT + token_for("store-a", "counter-1", "A-2"))
    assert await relay.post([first]) == 200
    await relay.collector.wait_for(1)
    marker = follow_event(user)
    assert await relay.post([redelivered(first), marker]) == 200
    assert await relay.post([redelivered(first)]) == 200
    got = await relay.collector.wait_for(2)
    await asyncio.sleep(0.3)
    ids = [msg["data"]["event"]["webhookEventId"] for _, msg in relay.collector.messages]
    assert ids == [first["webhookEventId"], marker["webhookEventId"]], got


async def test_bad_or_missing_signature_is_401_and_publishes_nothing(relay: Relay) -> None:
    event = text_message_event(new_user_id(), URL_PROMPT + token_for("store-a", "counter-1", "A-3"))
    body = webhook_body([event], "U" + "0" * 32)
    assert await relay.post([event], signature=sign(body, "not-the-secret")) == 401
    assert await relay.post([event], signature="") == 401
    unsigned = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(relay.url, data=body.encode(), headers=unsigned) as response:
        assert response.status == 401
    marker = follow_event(new_user_id())
    assert await relay.post([marker]) == 200
    await relay.collector.wait_for(1)
    await asyncio.sleep(0.3)
    assert [m["data"]["event"]["webhookEventId"] for _, m in relay.collector.messages] == [
        marker["webhookEventId"]
    ]


async def test_signed_garbage_is_400_and_the_console_check_is_200(relay: Relay) -> None:
    assert await relay.post([]) == 200  # LINE's "Verify" button sends an empty event list
    async with aiohttp.ClientSession() as http:
        body = '{"destination": "U0", "events": "nope"}'
        headers = {"X-Line-Signature": sign(body, SECRET)}
        headers["Content-Type"] = "application/json"
        async with http.post(relay.url, data=body.encode(), headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "malformed_webhook"
    odd = [
        {"type": "follow", "source": "nobody", "follow": 1, "timestamp": 1},
        {"type": "message", "source": [], "message": {}, "timestamp": 1},
        7,
    ]
    assert await relay.post(odd) == 400  # signed by LINE but not LINE's event shape: rejected, never a 500
    marker = follow_event(new_user_id())
    assert await relay.post([marker]) == 200
    got = await relay.collector.wait_for(1)
    await asyncio.sleep(0.3)
    assert [topic for topic, _ in relay.collector.messages] == [FLEET], got


async def test_broker_away_answers_200_within_a_second_and_keeps_the_event(tmp_path: Path) -> None:
    config = relay_config(free_port(), tmp_path / "relay")  # nothing listens there
    async with running_relay(config, wait_connected=False) as url:
        event = text_message_event(new_user_id(), URL_PROMPT + token_for("store-a", "counter-1", "A-4"))
        started = time.monotonic()
        status, _ = await post_webhook(url, [event], channel_secret=SECRET)
        assert status == 200  # stored in the relay's outbox; published once the broker is back
        assert time.monotonic() - started < 1.0


async def test_relay_reconnects_after_a_broker_restart(tmp_path: Path) -> None:
    port = free_port()
    config = relay_config(port, tmp_path / "relay")
    first = contextlib.ExitStack()
    first.enter_context(mosquitto(tmp_path, port=port))
    try:
        async with running_relay(config) as url:
            assert (await post_webhook(url, [follow_event(new_user_id())], channel_secret=SECRET))[0] == 200
            first.close()  # the broker goes away
            started = time.monotonic()
            event = follow_event(new_user_id())
            assert (await post_webhook(url, [event], channel_secret=SECRET))[0] == 200
            assert time.monotonic() - started < 1.0
            with mosquitto(tmp_path, port=port):
                async with collecting(port) as collector:
                    await wait_healthy(f"http://{config.relay.listen}")
                    # a redelivery of an event already stored is not published a second time
                    assert (await post_webhook(url, [redelivered(event)], channel_secret=SECRET))[0] == 200
                    # (the first event too, if the broker went away before it acknowledged it)
                    async with asyncio.timeout(40):
                        while event["webhookEventId"] not in (
                            m["data"]["event"]["webhookEventId"] for _, m in collector.messages
                        ):
                            await collector.wait_for(len(collector.messages) + 1, within_s=40)
                    await asyncio.sleep(0.5)
                    ids = [m["data"]["event"]["webhookEventId"] for _, m in collector.messages]
                    assert ids.count(event["webhookEventId"]) == 1
                    assert {topic for topic, _ in collector.messages} == {FLEET}
    finally:
        first.close()
