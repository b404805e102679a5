"""The conversion demo step against a real Mosquitto, relay and state DB. agent/sync is not on
main yet, so a minimal stand-in moves envelopes (down: MQTT -> inbox; up: outbox -> MQTT)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import aiomqtt
import pytest

from agent.config import ShopEdgeConfig, parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.demo import DemoRun, DemoStepFailed
from agent.demo.conversion import step_shopper_joins
from agent.supervisor import Supervisor
from cloud.relay import device_topic, rfc3339
from membership.conversion import ConversionConsumer
from offline_queue import Outbox
from tests.integration._broker import free_port, mosquitto
from tests.integration.test_conversion import Inbox


async def _stand_in_sync(ctx: AgentContext, port: int, inbox: Inbox) -> None:
    store, device = ctx.config.device.store_id, ctx.config.device.device_id
    async with aiomqtt.Client("127.0.0.1", port, identifier=device) as client:
        await client.subscribe(device_topic(store, device), qos=1)

        async def down() -> None:
            async for message in client.messages:
                inbox.queue.put_nowait(json.loads(bytes(message.payload)))  # type: ignore[arg-type]

        async def up() -> None:
            outbox: Outbox = ctx.services["outbox"]
            while True:
                for record in await outbox.claim("conversion"):
                    envelope = {
                        "id": str(uuid.uuid4()),
                        "kind": "conversion",
                        "ts": rfc3339(record.created_at),
                        "seq": record.id,
                        "data": record.payload,
                    }
                    await client.publish(
                        f"shopedge/v1/{store}/{device}/up/conversion", json.dumps(envelope), qos=1
                    )
                    await outbox.ack([record.id])
                await asyncio.sleep(0.05)

        async with asyncio.TaskGroup() as group:
            group.create_task(down())
            group.create_task(up())


def _config(tmp_path: Path, mqtt_port: int) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "demo-store", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path)},
            "line": {"channel_secret": "d" * 32, "oa_basic_id": "@shopedge"},
            "mqtt": {"port": mqtt_port},
            "binding": {"key": "k" * 32},
            "relay": {"listen": f"127.0.0.1:{free_port()}"},
        },
        environ={},
    )


async def _run_step(tmp_path: Path, *, with_sync: bool) -> str:
    with mosquitto(tmp_path) as port:
        config = _config(tmp_path, port)
        db = open_state_db(config.db_path)
        await asyncio.to_thread(migrate, db)
        ctx = AgentContext(config=config, db=db)
        ctx.services["outbox"] = await Outbox.open(config.db_path)
        inbox = Inbox()
        ctx.services["downlink"] = inbox
        run = DemoRun(
            config=config, config_path=tmp_path / "demo.toml", ctx=ctx, supervisor=Supervisor([], ctx.health)
        )
        run.extras["order_id"] = "DEMO-0001"
        tasks = [asyncio.create_task(ConversionConsumer(ctx).run())]
        if with_sync:
            tasks.append(asyncio.create_task(_stand_in_sync(ctx, port, inbox)))
        try:
            return await step_shopper_joins(run)
        finally:
            for task in [*tasks, run.extras.get("relay_task")]:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await ctx.services["outbox"].close()
            db.close()


async def test_step_records_and_sees_the_conversion_upstream(tmp_path: Path) -> None:
    summary = await _run_step(tmp_path, with_sync=True)
    assert "DEMO-0001" in summary and "new friend" in summary and "upstream" in summary


async def test_step_fails_clearly_without_the_downlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.demo.conversion.WAIT_S", 1.0)
    with pytest.raises(DemoStepFailed, match="no conversion for DEMO-0001"):
        await _run_step(tmp_path, with_sync=False)


async def test_step_through_the_real_agent(tmp_path: Path) -> None:
    """The whole path with the real daemon (sync downlink + uplink, outbox, conversion consumer)."""
    from agent.config import load_config
    from agent.daemon import run_agent

    with mosquitto(tmp_path) as port:
        path = tmp_path / "agent.toml"
        path.write_text(
            f"""
[device]
store_id = "demo-store"
device_id = "counter-1"
[storage]
state_dir = "{tmp_path}/state"
[pos]
listen = "127.0.0.1:{free_port()}"
[display]
driver = "png"
png_path = "{tmp_path}/screen.png"
listen = "127.0.0.1:{free_port()}"
[ble]
enabled = false
[line]
channel_secret = "{"c" * 32}"
oa_basic_id = "@shopedge"
[mqtt]
port = {port}
[binding]
key = "{"k" * 32}"
[relay]
listen = "127.0.0.1:{free_port()}"
""",
            encoding="utf-8",
        )
        config = load_config(path)
        started: asyncio.Future[tuple[AgentContext, Supervisor]] = asyncio.get_running_loop().create_future()
        agent = asyncio.create_task(run_agent(config, on_started=lambda c, s: started.set_result((c, s))))
        ctx, supervisor = await started
        run = DemoRun(config=config, config_path=path, ctx=ctx, supervisor=supervisor)
        try:
            connected = asyncio.Event()
            ctx.health.listen(
                lambda item: connected.set() if (item.name, item.level) == ("sync", "green") else None
            )
            sync = ctx.health.get("sync")
            if sync is None or sync.level != "green":
                await asyncio.wait_for(connected.wait(), 15)
            summary = await step_shopper_joins(run)
            assert "recorded and upstream" in summary
            health = ctx.health.get("conversion")
            assert health is not None and health.detail == "1 recorded"
        finally:
            supervisor.stop()
            await agent
            relay = run.extras.get("relay_task")
            if relay is not None:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
