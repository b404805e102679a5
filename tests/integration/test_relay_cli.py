"""`shopedge relay` as a process: serves, relays a signed webhook, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from emulators.messaging.webhooks import follow_event, new_user_id, post_webhook
from tests.integration._broker import collecting, free_port, mosquitto

ROOT = Path(__file__).resolve().parents[2]


def _config(
    tmp_path: Path, mqtt_port: int, listen_port: int, secret: str, state_dir: Path | None = None
) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(
        f"""
[device]
store_id = "cloud"
device_id = "relay-1"
[line]
channel_secret = "{secret}"
[mqtt]
port = {mqtt_port}
[relay]
listen = "127.0.0.1:{listen_port}"
state_dir = "{state_dir or tmp_path / "relay-state"}"
""",
        encoding="utf-8",
    )
    return path


def _spawn(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "relay", "--config", str(config)],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_relay_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as mqtt_port:
        listen = free_port()
        config = _config(tmp_path, mqtt_port, listen, "topsecret")
        proc = _spawn(config)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    try:
                        async with http.get(f"http://127.0.0.1:{listen}/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("relay did not come up")
            async with collecting(mqtt_port) as collector:
                event = follow_event(new_user_id())
                status, _ = await post_webhook(
                    f"http://127.0.0.1:{listen}/line/webhook", [event], channel_secret="topsecret"
                )
                assert status == 200
                [(topic, message)] = await collector.wait_for(1)
                assert topic == "shopedge/v1/fleet/line_event"
                assert message["data"]["event"]["webhookEventId"] == event["webhookEventId"]
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=10)
            assert proc.returncode == 0, stderr
            assert time.monotonic() - started < 5
            assert "topsecret" not in stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_relay_without_channel_secret_exits_2(tmp_path: Path) -> None:
    config = _config(tmp_path, 1883, free_port(), "")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "relay", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "line.channel_secret" in done.stderr and "Traceback" not in done.stderr


def test_relay_whose_state_dir_cannot_be_written_is_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be", encoding="utf-8")
    config = _config(tmp_path, 1883, free_port(), "topsecret", state_dir=blocker / "relay")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "relay", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("relay: ")] == [
        line for line in done.stderr.splitlines() if "relay.state_dir" in line
    ]
    assert "relay.state_dir" in done.stderr and str(blocker) in done.stderr
