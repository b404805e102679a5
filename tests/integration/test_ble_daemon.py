"""The BLE capability inside the real daemon: a replayed shop through the whole agent, then
every log line, every outbox record and every byte of the state directory is searched for the
capture's device addresses. Also: with driver = "bleak" and no adapter, health says so."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from drivers.ble.replay import DEMO_CAPTURE, parse_capture_line
from offline_queue import Outbox

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, ble: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[device]
store_id = "demo-store"
device_id = "counter-1"

[storage]
state_dir = "{tmp_path / "state"}"

[mqtt]
enabled = false

[ble]
{ble}
""",
        encoding="utf-8",
    )
    return config


def _run(config: Path, seconds: float) -> str:
    """Run the daemon for `seconds` after it says it started (a loaded machine starts slowly),
    then stop it with SIGTERM; every line it wrote."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "shopedge started" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(60), "".join(lines)[-2000:]
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)[-2000:]
    return "".join(lines)


def _forms(address: str) -> list[bytes]:
    plain = address.replace(":", "")
    texts = {
        address,
        address.lower(),
        plain,
        plain.lower(),
        address.replace(":", "_"),
        address.replace(":", "_").lower(),
    }
    return [t.encode() for t in texts] + [t.encode("utf-16-le") for t in texts]


async def _all_records(db: Path) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    async with await Outbox.open(db) as outbox:
        for stream in ("presence", "beacon_health"):
            while batch := await outbox.claim(stream, limit=500):
                out += [(stream, record.payload) for record in batch]
                await outbox.ack([record.id for record in batch])
    return out


def test_replayed_shop_through_the_daemon_stores_and_logs_no_address(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        'driver = "replay"\nreplay_speed = 200.0\nreplay_loop = false\nstore_beacon_hwids = ["0123456789"]\n'
        "beacon_silent_after_s = 60",
    )
    logs = _run(config, 6.0)
    state = tmp_path / "state"
    raw_files = b"".join(path.read_bytes() for path in state.rglob("*") if path.is_file())
    records = asyncio.run(_all_records(state / "shopedge.db"))

    kinds = {(stream, payload["kind"]) for stream, payload in records}
    assert ("presence", "enter") in kinds
    assert ("presence", "leave") in kinds
    assert ("presence", "footfall") in kinds
    assert ("beacon_health", "beacon_silent") in kinds

    addresses = {
        parsed.address
        for text in DEMO_CAPTURE.read_text(encoding="utf-8").splitlines()
        if (parsed := parse_capture_line(text)) is not None
    }
    haystacks = {"logs": logs.encode(), "state files": raw_files, "records": json.dumps(records).encode()}
    for address in addresses:
        for form in _forms(address):
            for where, data in haystacks.items():
                assert form not in data, f"{form!r} found in {where}"


def test_no_adapter_is_reported_in_health_not_a_crash_loop(tmp_path: Path) -> None:
    # hci9 exists nowhere: without D-Bus this is "no adapter", with BlueZ "adapter gone".
    config = _config(tmp_path, 'driver = "bleak"\nadapter = "hci9"')
    logs = _run(config, 4.0)
    health = [
        json.loads(line) for line in logs.splitlines() if line.startswith("{") and '"msg": "health"' in line
    ]
    assert health
    last = health[-1]["status"]
    assert last.startswith("red")
    assert "ble red (no adapter" in last or "ble red (adapter gone" in last, last
    assert "component crashed" not in logs
