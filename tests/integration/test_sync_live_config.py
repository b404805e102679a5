"""Issue 14, item 5: a live `config` change is applied only when every component that reads the
key uses the new value at once, validated strictly, and the reply says which config version and
values are in force. Real Mosquitto, the real POS API (agent.wiring.pos), a real state DB."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import SyncService, down_topic, format_ts
from agent.wiring.pos import PosBridge
from offline_queue import Outbox
from tests.integration.sync_brokers import Broker, free_port, mosquitto_fixture  # noqa: F401
from tests.integration.sync_support import cloud_consumer, publish_down
from tests.unit.sync.asyncapi import validator

TOKEN = "till-token-0123456789"


def config_for(broker: Broker, tmp_path: Path) -> Any:
    return parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path / "state")},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
            "pos": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN, "max_amount_twd": 50_000},
            "linepay": {
                "api_base": "http://127.0.0.1:9",
                "channel_id": "1234567890",
                "channel_secret": "x" * 32,
            },
        },
        environ={},
    )


@contextlib.asynccontextmanager
async def device(broker: Broker, tmp_path: Path) -> AsyncIterator[tuple[SyncService, PosBridge]]:
    config = config_for(broker, tmp_path)
    db = open_state_db(config.db_path)
    migrate(db)
    outbox = await Outbox.open(config.db_path)
    ctx = AgentContext(config=config, db=db, services={"outbox": outbox})
    pos, sync = PosBridge(ctx), SyncService(ctx)
    tasks = [asyncio.create_task(pos.run()), asyncio.create_task(sync.run())]
    try:
        async with asyncio.timeout(20):
            while not pos.url or not sync.connected.is_set():  # noqa: ASYNC110 - two components
                await asyncio.sleep(0.05)
        yield sync, pos
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await outbox.close()
        db.close()


async def send_config(broker: Broker, changes: dict[str, Any]) -> str:
    eid = str(uuid.uuid4())
    body = {"id": eid, "kind": "config", "ts": format_ts(1.7e9), "seq": 0, "data": {"set": changes}}
    await publish_down(broker, down_topic("store-001", "counter-1", "config"), json.dumps(body).encode())
    return eid


async def test_live_limit_is_used_at_once_and_refusals_say_why(mosquitto: Broker, tmp_path: Path) -> None:
    async with (
        device(mosquitto, tmp_path) as (sync, pos),
        cloud_consumer(mosquitto, "shopedge/v1/+/+/up/reply") as cloud,
        aiohttp.ClientSession() as http,
    ):
        applied = await send_config(mosquitto, {"pos.max_amount_twd": 1000})
        as_text = await send_config(mosquitto, {"pos.max_amount_twd": "300"})  # a string is no integer
        as_bool = await send_config(mosquitto, {"mqtt.batch_max": True})  # nor a boolean
        unread = await send_config(mosquitto, {"display.language": "en"})  # no display runs here
        not_live = await send_config(mosquitto, {"linepay.fee_rate": 0.03})  # read by `shopedge report`
        await cloud.wait_for(lambda: len(cloud.envelopes("reply")) >= 5)
        replies = {e["data"]["request_id"]: e["data"] for e in cloud.envelopes("reply")}
        for reply in replies.values():
            validator("ReplyData").validate(reply)

        ok = replies[applied]
        assert ok["ok"] is True and ok["version"] == 1
        assert ok["effective"]["pos.max_amount_twd"] == 1000
        assert ok["effective"]["display.language"] == "zh-TW"
        for refused in (as_text, as_bool, unread, not_live):
            assert replies[refused]["ok"] is False and replies[refused]["version"] == 1, replies[refused]
            assert replies[refused]["effective"]["pos.max_amount_twd"] == 1000
        assert "valid integer" in replies[as_text]["detail"]
        assert "valid integer" in replies[as_bool]["detail"]
        assert "display does not follow it" in replies[unread]["detail"]
        assert "not a live key" in replies[not_live]["detail"]

        # the till sees the new limit at once, in the check and in the OpenAPI document
        async with http.get(pos.url + "/openapi.json") as r:
            schema = (await r.json())["components"]["schemas"]["PaymentCreate"]
        assert schema["properties"]["amount"]["maximum"] == 1000
        sale = {"order_id": "L1", "amount": 1500, "currency": "TWD", "product_name": "x", "method": "qr"}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(pos.url + "/v1/payments", json=sale, headers=headers) as r:
            assert r.status == 422 and (await r.json())["error"] == "amount_over_limit"
    assert sync.live.config.pos.max_amount_twd == 1000


async def test_display_language_follows_live(tmp_path: Path) -> None:
    from agent.live_config import live_config
    from agent.sync._downlink import apply_live_config
    from agent.wiring.display import build_display

    config = parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path)},
            "display": {"driver": "png"},
        },
        environ={},
    )
    ctx = AgentContext(config=config, db=None)  # type: ignore[arg-type]
    service = build_display(ctx)
    live = live_config(ctx.services, config)
    new, problems = apply_live_config(live.config, {"display.language": "en"}, following=live.following())
    assert problems == {} and new is not None
    live.update(new, {"display.language": "en"}, version=1)
    assert service.config.language == "en"  # the next frame is drawn in English
