"""`shopedge demo --once` as a user runs it: the whole visit, with and without a broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import agent.demo as demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_once_plays_the_whole_visit(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--once", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for step in (
        "beacons heard",
        "pay by My Code",
        "pay by counter QR",
        "shopper joins via the binding QR",
        "welcome coupon, once, free by reply",
        "coupon redeemed at the till",
        "funnel report",
        "a friend walks in: greeted by the counter's beacon, free by reply",
        "cloud sync",
        "cloud ingest worker joins",
        "the cloud saw the visit",
    ):
        assert f"ok    {step}" in out, out
    assert "FLEET" in out and "demo-store" in out  # the fleet report, read from the cloud database
    assert "scanned off the paid screen" in out and "recorded and upstream" in out
    assert "greeted by reply (free)" in out and "via relay and MQTT" in out and "got nothing" in out
    assert f"demo succeeded: {len(demo.SCENARIO)}/{len(demo.SCENARIO)} steps" in out
    assert (tmp_path / "demo.toml").exists()
    # the generated config is usable by every other command
    stats = subprocess.run(
        [sys.executable, "-m", "agent", "queue", "stats", "--config", str(tmp_path / "demo.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr


async def test_demo_completes_without_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = demo.free_port()  # nothing listens there
    monkeypatch.setattr(demo, "start_private_broker", lambda state_dir: (None, port))
    lines: list[str] = []
    assert await demo.run_demo(tmp_path, once=True, out=lines.append) == 0, lines
    text = "\n".join(lines)
    assert "MQTT broker: none reachable" in text
    assert "the record waits in the outbox for sync" in text
    assert "no broker:" in text and "records wait in the outbox for sync" in text
    assert "greeted by reply (free)" in text and "in-process relay hop (no broker)" in text
