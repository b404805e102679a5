"""The relay under faults nobody scripted (issue 14), over real HTTP and a real Mosquitto:
the broker away (through a TCP link the test cuts and restores), the same event in parallel
requests, a 500-event webhook, hostile or odd bodies. Every accepted event is published once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from emulators.messaging.webhooks import (
    beacon_event,
    follow_event,
    new_user_id,
    post_webhook,
    redelivered,
    sign,
    text_message_event,
)
from tests.integration._broker import collecting, free_port, mosquitto
from tests.integration.small_disk import SmallDisk, small_disk
from tests.integration.test_relay import SECRET, relay_config, running_relay

__all__ = ["small_disk"]  # the fixture, imported to be used here


class Link:
    """A TCP link from the relay to the broker that the test can cut (broker down) and restore."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = free_port()
        self.up = False
        self._pairs: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._pairs):
            writer.close()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        self._pairs |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def link_to(broker_port: int) -> AsyncIterator[Link]:
    link = Link(broker_port)
    await link.start()
    try:
        yield link
    finally:
        await link.close()


async def healthz(base: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as response:
        return await response.json()  # type: ignore[no-any-return]


async def test_broker_down_then_up_every_accepted_event_is_published_once(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        async with link_to(port) as link, collecting(port) as collector:
            config = relay_config(link.port, tmp_path / "relay")
            async with running_relay(config, wait_connected=False) as url:
                user = new_user_id()
                a, b, c = follow_event(user), follow_event(new_user_id()), follow_event(new_user_id())
                # The broker is away: LINE still gets its 200 at once, and nothing is lost.
                assert (await post_webhook(url, [a, b, a], channel_secret=SECRET))[0] == 200
                assert (await post_webhook(url, [redelivered(b), c], channel_secret=SECRET))[0] == 200
                health = await healthz(f"http://{config.relay.listen}")
                assert health["mqtt"] == "disconnected" and health["backlog"] == 3, health
                await asyncio.sleep(0.5)
                assert collector.messages == []
                link.up = True
                got = await collector.wait_for(3, within_s=40)
                await asyncio.sleep(0.5)
                ids = [m["data"]["event"]["webhookEventId"] for _, m in collector.messages]
                assert sorted(ids) == sorted(e["webhookEventId"] for e in (a, b, c)), got
                # Cut again mid-run: an event accepted meanwhile still arrives once the link is back.
                link.cut()
                d = follow_event(new_user_id())
                assert (await post_webhook(url, [d], channel_secret=SECRET))[0] == 200
                link.up = True
                await collector.wait_for(4, within_s=40)
                await asyncio.sleep(0.5)
                ids = [m["data"]["event"]["webhookEventId"] for _, m in collector.messages]
                assert len(ids) == 4 and ids[-1] == d["webhookEventId"]
                assert (await healthz(f"http://{config.relay.listen}"))["backlog"] == 0


async def test_a_restarted_relay_publishes_what_it_accepted_before(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        async with link_to(port) as link, collecting(port) as collector:
            config = relay_config(link.port, tmp_path / "relay")
            event = follow_event(new_user_id())
            async with running_relay(config, wait_connected=False) as url:
                assert (await post_webhook(url, [event], channel_secret=SECRET))[0] == 200
            link.up = True
            async with running_relay(config, wait_connected=False):
                [(_, message)] = await collector.wait_for(1, within_s=40)
            assert message["data"]["event"]["webhookEventId"] == event["webhookEventId"]


async def test_the_same_event_in_parallel_requests_is_published_once(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        config = relay_config(port, tmp_path / "relay")
        async with collecting(port) as collector, running_relay(config) as url:
            events = [follow_event(new_user_id()) for _ in range(5)]
            body = events + events[:2]  # twice in one body, too
            answers = await asyncio.gather(
                *(post_webhook(url, body, channel_secret=SECRET) for _ in range(6))
            )
            assert [status for status, _ in answers] == [200] * 6
            await collector.wait_for(5)
            await asyncio.sleep(1.0)
            ids = [m["data"]["event"]["webhookEventId"] for _, m in collector.messages]
            assert sorted(ids) == sorted(e["webhookEventId"] for e in events)
            health = await healthz(f"http://{config.relay.listen}")
            assert health["accepted"] == 5 and health["duplicates"] == 6 * 7 - 5, health


async def test_500_events_in_one_webhook_keep_publishes_in_flight_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with mosquitto(tmp_path) as port:
        config = relay_config(port, tmp_path / "relay")
        async with collecting(port) as collector, running_relay(config) as url:
            events = [beacon_event(new_user_id(), "0123456789") for _ in range(500)]
            with caplog.at_level(logging.WARNING):
                assert (await post_webhook(url, events, channel_secret=SECRET))[0] == 200
                await collector.wait_for(500, within_s=30)
                await asyncio.sleep(0.5)
            assert len(collector.messages) == 500
            assert not [r for r in caplog.records if "pending publish" in r.getMessage()]


async def test_bad_bodies_and_bad_events_are_4xx_with_json_never_503(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        config = relay_config(port, tmp_path / "relay")
        async with (
            collecting(port) as collector,
            running_relay(config) as url,
            aiohttp.ClientSession() as http,
        ):

            async def signed(
                body: str, content_type: str = "application/json"
            ) -> tuple[int, dict[str, object]]:
                headers = {"X-Line-Signature": sign(body, SECRET), "Content-Type": content_type}
                async with http.post(url, data=body.encode(), headers=headers) as response:
                    return response.status, await response.json()

            deep = '{"destination":"U0","events":' + "[" * 50_000 + "]" * 50_000 + "}"
            status, answer = await signed(deep)
            assert (status, answer["error"]) == (400, "malformed_json") and "nested" in str(answer["message"])
            status, answer = await signed('{"destination":"U0","events":[]}', "text/plain")
            assert (status, answer["error"]) == (415, "unsupported_media_type")
            bad_time = {**follow_event(new_user_id()), "timestamp": "yesterday"}
            status, answer = await signed(json.dumps({"destination": "U0", "events": [bad_time]}))
            assert (status, answer["error"]) == (400, "invalid_events"), answer
            assert "timestamp" in str(answer["message"])
            good = text_message_event(new_user_id(), "hello")
            status, answer = await signed(json.dumps({"destination": "U0", "events": [bad_time, good, 7]}))
            assert status == 200 and answer["accepted"] == 1, answer
            assert [r["index"] for r in answer["rejected"]] == [0, 2]  # type: ignore[attr-defined]
            [(_, message)] = await collector.wait_for(1)
            assert message["data"]["event"]["webhookEventId"] == good["webhookEventId"]
            health = await healthz(f"http://{config.relay.listen}")
            assert health["rejected"] == 3, health


async def test_relay_that_cannot_store_answers_503_storage_unavailable_and_recovers(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    with mosquitto(tmp_path) as port:
        config = relay_config(port, small_disk.root / "relay")
        async with collecting(port) as collector, running_relay(config) as url:
            base = f"http://{config.relay.listen}"
            small_disk.fill()
            lost = follow_event(new_user_id())
            status, text = await post_webhook(url, [lost], channel_secret=SECRET)
            # Not stored, so not acknowledged: LINE may redeliver it (nothing claims it was kept).
            assert status == 503 and json.loads(text)["error"] == "storage_unavailable", text
            health = await healthz(base)
            assert health["storage"] == "write_failed", health
            small_disk.free()
            kept = follow_event(new_user_id())
            assert (await post_webhook(url, [redelivered(lost), kept], channel_secret=SECRET))[0] == 200
            await collector.wait_for(2)
            ids = sorted(m["data"]["event"]["webhookEventId"] for _, m in collector.messages)
            assert ids == sorted([lost["webhookEventId"], kept["webhookEventId"]])
            assert (await healthz(base))["storage"] == "ok"
