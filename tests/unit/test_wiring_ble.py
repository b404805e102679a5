"""The BLE component end to end on a fake clock: replay -> engine -> sink, health, and privacy."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason

from agent.config import ShopEdgeConfig, parse_config
from agent.context import AgentContext
from agent.logs import JSONFormatter, RedactingFilter
from agent.wiring.ble import BLEPresence
from agent.wiring.presence_sink import MemorySink
from base.health import HealthBoard, Level
from drivers.ble.base import AdvertSource
from drivers.ble.replay import DEMO_CAPTURE, ReplaySource, parse_capture_line
from drivers.ble.scanner import BleakSource
from tests.unit.drivers.ble.fakes import FakeBleak, FakeControl, FakeTimer

WALL0 = 1_763_856_000.0


def config(**ble: Any) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "demo-store", "device_id": "counter-1"},
            "ble": {"driver": "replay", "store_beacon_hwids": ["0123456789"], **ble},
        },
        environ={},
    )


def context(cfg: ShopEdgeConfig, services: dict[str, Any] | None = None) -> AgentContext:
    return AgentContext(
        config=cfg,
        db=None,
        health=HealthBoard(),
        wall_clock=lambda: WALL0,
        services=services or {},  # type: ignore[arg-type]
    )


async def run_for(component: BLEPresence, timer: FakeTimer, virtual_s: float) -> asyncio.Task[None]:
    """Run the component until the fake clock passes `virtual_s`; returns the still-running task."""
    task = asyncio.create_task(component.run())
    for _ in range(1_000_000):
        if timer.t >= virtual_s or task.done():
            break
        await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    assert not task.done(), "the component must keep running"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def address_forms(address: str) -> list[str]:
    hex_only = address.replace(":", "")
    return [
        address,
        address.lower(),
        hex_only,
        hex_only.lower(),
        address.replace(":", "_"),
        address.replace(":", "-"),
    ]


async def test_replay_through_the_component_never_leaks_an_address(caplog: pytest.LogCaptureFixture) -> None:
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        cfg = config(replay_loop=False)
        timer = FakeTimer()
        sink = MemorySink()
        ctx = context(cfg)
        ctx.health.listen(
            lambda item: logging.getLogger("test.health").info("health", extra={"status": item.detail})
        )
        source = ReplaySource(DEMO_CAPTURE, speed=1.0, loop=False, timer=timer)
        component = BLEPresence(ctx, sink=sink, source=source)
        task = await run_for(component, timer, 700.0)
        await stop(task)
    finally:
        root.removeHandler(handler)

    addresses = {
        parsed.address
        for text in DEMO_CAPTURE.read_text(encoding="utf-8").splitlines()
        if (parsed := parse_capture_line(text)) is not None
    }
    assert len(addresses) >= 15
    log_text = captured.getvalue() + "\n".join(
        r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records
    )
    records = [json.dumps(payload) for _, payload in sink.events]
    assert records and log_text
    haystack = (log_text + "\n".join(records)).upper()
    for address in addresses:
        for form in address_forms(address):
            assert form.upper() not in haystack, f"{form} leaked"
    # Nothing shaped like an address at all, from any device.
    assert not re.search(r"(?i)\b(?:[0-9a-f]{2}[:_-]){5}[0-9a-f]{2}\b", haystack)

    kinds = [(stream, p["kind"], p.get("beacon", p.get("hwid"))) for stream, p in sink.events]
    assert ("presence", "enter", "line:0123456789") in kinds
    assert ("presence", "enter", "eddystone-uid:00010203040506070809:0a0b0c0d0e0f") in kinds
    assert ("presence", "leave", "eddystone-uid:00010203040506070809:0a0b0c0d0e0f") in kinds
    assert ("presence", "enter", "line:fedcba9876") not in kinds  # the neighbour's beacon, through the wall
    assert (
        "beacon_health",
        "beacon_silent",
        "0123456789",
    ) in kinds  # the capture ended: the beacon went quiet
    footfall = [p for stream, p in sink.events if p["kind"] == "footfall"]
    assert footfall and sum(p["devices"] for p in footfall) >= 10
    assert all(p["ts"] >= WALL0 for _, p in sink.events)


async def test_store_beacon_silence_turns_health_amber() -> None:
    cfg = config(replay_loop=False, beacon_silent_after_s=60)
    timer = FakeTimer()
    ctx = context(cfg)
    component = BLEPresence(
        ctx, sink=MemorySink(), source=ReplaySource(DEMO_CAPTURE, loop=False, timer=timer)
    )
    task = await run_for(component, timer, 100.0)
    health = ctx.health.get("ble")
    assert health is not None and health.level is Level.GREEN, health
    task2 = task
    for _ in range(1_000_000):
        if timer.t >= 300:
            break
        await asyncio.sleep(0)
    health = ctx.health.get("ble")
    assert health is not None
    assert health.level is Level.AMBER
    assert "store beacon 0123456789 silent" in health.detail
    await stop(task2)


async def test_no_adapter_is_red_and_the_component_keeps_going() -> None:
    missing = BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
    )
    bleak = FakeBleak(*([missing] * 50))
    timer = FakeTimer()
    source = BleakSource(timer=timer, scanner_factory=bleak.factory, control=FakeControl(bleak.log))
    cfg = config(driver="bleak")
    ctx = context(cfg)
    sink = MemorySink()
    task = await run_for(BLEPresence(ctx, sink=sink, source=source), timer, 400.0)
    health = ctx.health.get("ble")
    assert health is not None
    assert health.level is Level.RED
    assert "no adapter" in health.detail
    assert bleak.log.count("start") >= 10  # still trying, every 30 s
    # Presence is still clock-driven while the radio is down: the store beacon alert goes out.
    assert ("beacon_health", "beacon_silent") in [(s, p["kind"]) for s, p in sink.events]
    await stop(task)


class FakeOutbox:
    def __init__(self, fail: bool = False) -> None:
        self.puts: list[tuple[str, dict[str, Any], Any]] = []
        self.fail = fail

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Any = "critical",
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int:
        if self.fail:
            raise OSError("disk full")
        self.puts.append((stream, payload, durability))
        return len(self.puts)


async def test_events_go_to_the_outbox_as_telemetry() -> None:
    outbox = FakeOutbox()
    timer = FakeTimer()
    ctx = context(config(replay_loop=False), services={"outbox": outbox})
    component = BLEPresence(ctx, source=ReplaySource(DEMO_CAPTURE, loop=False, timer=timer))
    task = await run_for(component, timer, 200.0)
    assert outbox.puts
    assert {stream for stream, _, _ in outbox.puts} <= {"presence", "beacon_health"}
    assert all(durability == "telemetry" for _, _, durability in outbox.puts)
    health = ctx.health.get("ble")
    assert health is not None and "outbox" not in health.detail
    await stop(task)


async def test_without_an_outbox_health_says_so() -> None:
    timer = FakeTimer()
    ctx = context(config())
    task = await run_for(BLEPresence(ctx, source=ReplaySource(DEMO_CAPTURE, timer=timer)), timer, 20.0)
    health = ctx.health.get("ble")
    assert health is not None
    assert health.level is Level.AMBER
    assert "no outbox" in health.detail
    await stop(task)


async def test_an_outbox_failure_does_not_stop_scanning() -> None:
    timer = FakeTimer()
    ctx = context(config(), services={"outbox": FakeOutbox(fail=True)})
    component = BLEPresence(ctx, source=ReplaySource(DEMO_CAPTURE, timer=timer))
    task = await run_for(component, timer, 400.0)
    assert component.emit_failures > 0
    assert component.emitted == 0
    await stop(task)


def test_open_source_picks_the_driver(tmp_path: Path) -> None:
    from drivers.ble.base import open_source

    replay: AdvertSource = open_source(config().ble, timer=FakeTimer())
    assert isinstance(replay, ReplaySource)
    assert replay.path == DEMO_CAPTURE
    bleak: AdvertSource = open_source(config(driver="bleak", scanning_mode="passive").ble, timer=FakeTimer())
    assert isinstance(bleak, BleakSource)
    assert bleak.scanning_mode == "passive"
