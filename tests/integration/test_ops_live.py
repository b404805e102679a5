"""The running agent serves the technician's view on the POS listener: `/status`, `/status.json`
and `/metrics` from the real daemon (demo config: replayed beacons, emulator endpoints), and the
doctor's beacon row reads it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load_config
from agent.demo import demo_config_text, free_port
from agent.doctor import Environment, Status, check_beacon

ROOT = Path(__file__).resolve().parents[2]


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, object] | None:
    try:
        async with session.get(url) as response:
            return await response.json() if response.status == 200 else None
    except aiohttp.ClientError:
        return None


def _beacon_heard(status: dict[str, object] | None) -> bool:
    """The store beacon (and only it) is listed, not silent, with the time it was last heard."""
    beacons = status.get("beacons") if status else None
    if not isinstance(beacons, list) or len(beacons) != 1:
        return False
    (beacon,) = beacons
    return (
        beacon.get("hwid") == "0123456789"
        and beacon.get("silent") is False
        and isinstance(beacon.get("last_heard"), float)
    )


async def test_running_agent_serves_status_and_metrics(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("pos", "linepay", "messaging", "display", "relay", "mqtt")}
    config_path = tmp_path / "config.toml"
    config_path.write_text(demo_config_text(tmp_path / "state", ports))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "run",
        "--config",
        str(config_path),
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{ports['pos']}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            deadline = time.monotonic() + 60
            status: dict[str, object] | None = None
            while time.monotonic() < deadline:
                status = await _get_json(session, f"{base}/status.json")
                if _beacon_heard(status):
                    break
                await asyncio.sleep(0.2)
            assert status is not None, "agent never served /status.json"
            # The BLE component records sightings: the store beacon, heard, with when.
            assert _beacon_heard(status), f"store beacon not heard within 60 s: {status.get('beacons')}"
            names = {c["name"] for c in status["components"]}  # type: ignore[union-attr]
            assert {"pos", "ble", "display", "status"} <= names

            async with session.get(f"{base}/status") as response:
                page = await response.text()
            assert (
                response.status == 200 and 'http-equiv="refresh"' in page and "demo-store/counter-1" in page
            )
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
            families = {f.name for f in text_string_to_metric_families(text)}
            assert {
                "shopedge_health_level",
                "shopedge_outbox_depth",
                "shopedge_store_beacon_silent",
            } <= families

            row = await check_beacon(load_config(config_path), Environment())
            assert row.status is Status.PASS and row.detail == "heard recently: 0123456789"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
    assert proc.returncode == 0
