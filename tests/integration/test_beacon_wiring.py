"""The agent's beacon wiring: `beacon.advertise` adds the advertiser component, which broadcasts
the rotating code of the store's binding key through (the stand-in) BlueZ and reports health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import ShopEdgeConfig, parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.wiring import LateComponent, build_components
from agent.wiring.beacon import BeaconAdvertising
from base.health import Level
from membership.beacon_code import Verdict, verify
from membership.greeter import Greeter
from tests.integration.fake_bluez import HAVE_DBUS, FakeBluez, private_bus

KEY = "wiring-test-binding-key-000000001"
HWID = "32af519e88"


def config(tmp_path: Path, *, advertise: bool) -> ShopEdgeConfig:
    return parse_config(
        {
            "device": {"store_id": "store-001", "device_id": "counter-1"},
            "storage": {"state_dir": str(tmp_path)},
            "ble": {"enabled": False},
            "mqtt": {"enabled": False},
            "binding": {"key": KEY},
            "beacon": {"hwid": HWID, "advertise": advertise},
        },
        environ={},
    )


def context(tmp_path: Path, *, advertise: bool) -> AgentContext:
    db = open_state_db(tmp_path / "shopedge.db")
    migrate(db)
    return AgentContext(config=config(tmp_path, advertise=advertise), db=db)


@pytest.mark.parametrize("advertise", [True, False])
def test_advertise_adds_the_beacon_component_and_the_greeter_is_always_there(
    tmp_path: Path, advertise: bool
) -> None:
    ctx = context(tmp_path, advertise=advertise)
    components = build_components(ctx)
    names = [c.name for c in components]
    assert ("beacon" in names) is advertise
    # Late components (built once the POS API serves): nothing of theirs exists before that.
    stage = next(c for c in components if isinstance(c, LateComponent)).stage
    assert "greeter" not in ctx.services
    built = stage.build()
    assert isinstance(ctx.services.get("greeter"), Greeter)
    assert isinstance(built.get("beacon"), BeaconAdvertising) is advertise
    ctx.db.close()


@pytest.fixture
def system_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with private_bus() as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)  # what dbus-fast's BusType.SYSTEM reads
        yield address


@pytest.mark.skipif(not HAVE_DBUS, reason="needs dbus-daemon")
async def test_the_component_broadcasts_the_rotating_code_and_reports_health(
    tmp_path: Path, system_bus: str
) -> None:
    bluez = await FakeBluez(system_bus).start()
    ctx = context(tmp_path, advertise=True)
    component = BeaconAdvertising(ctx)
    health = ctx.health.get("beacon")
    assert health is not None and health.level is Level.AMBER  # listed at once, starting
    task = asyncio.create_task(component.run(), name="shopedge.beacon.advertise")
    try:
        await bluez.wait_for(lambda: bluez.adverts)
        frame = bluez.only().frame
        assert frame[:7] == bytes.fromhex("02" + HWID + "7f")
        assert verify(KEY.encode(), bytes.fromhex(HWID), frame[7:], ctx.wall_clock()) is Verdict.CURRENT
        async with asyncio.timeout(10):
            while (ctx.health.get("beacon") or health).level is not Level.GREEN:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        now = ctx.health.get("beacon")
        assert now is not None and "advertising LINE Beacon 32af519e88" in now.detail
        await bluez.stop()  # bluetoothd goes away: red with the reason
        async with asyncio.timeout(10):
            while (ctx.health.get("beacon") or health).level is not Level.RED:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ctx.db.close()
