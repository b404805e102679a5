"""The daemon with sync wired in, as a process against a real Mosquitto: retained online status
with the agent version on connect; a retained offline status from the last will when the
process dies without saying goodbye (SIGKILL), and from the agent itself on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt

from agent import __version__
from agent.sync import status_topic
from tests.integration.sync_brokers import Broker, mosquitto_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def start_agent(tmp_path: Path, broker: Broker) -> subprocess.Popen[bytes]:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[device]
store_id = "store-9"
device_id = "till-2"
[storage]
state_dir = "{tmp_path / "state"}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5
[display]
driver = "png"
png_path = "{tmp_path / "screen.png"}"
""",
        encoding="utf-8",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def next_status(client: aiomqtt.Client, state: str, within: float = 30) -> dict[str, object]:
    async def loop() -> dict[str, object]:
        async for message in client.messages:
            body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            if body["state"] == state:
                return dict(body)
        raise AssertionError("subscription ended")

    return await asyncio.wait_for(loop(), within)


async def test_status_online_then_will_on_kill_then_goodbye_on_term(
    mosquitto: Broker, tmp_path: Path
) -> None:
    topic = status_topic("store-9", "till-2")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud-status") as cloud:
        await cloud.subscribe(topic, qos=1)
        proc = start_agent(tmp_path, mosquitto)
        try:
            online = await next_status(cloud, "online")
            assert online["agent_version"] == __version__ and online["device_id"] == "till-2"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            offline = await next_status(cloud, "offline")
            assert offline["store_id"] == "store-9"
            proc = start_agent(tmp_path, mosquitto)
            await next_status(cloud, "online")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            await next_status(cloud, "offline", within=5)
        finally:
            proc.kill()
    # Retained: a consumer that connects later learns the last state at once.
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="cloud-late") as late:
        await late.subscribe(topic, qos=1)
        assert (await next_status(late, "offline", within=5))["device_id"] == "till-2"
