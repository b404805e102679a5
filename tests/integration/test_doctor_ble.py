"""The BLE row against a BlueZ stand-in on a private D-Bus daemon: the same GetManagedObjects
call the doctor makes to org.bluez on a Pi, answered with a powered, unpowered or missing
adapter, or with nobody owning the org.bluez name."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dbus_fast import PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property

from agent.config import ShopEdgeConfig, parse_config
from agent.doctor import Environment, Status, check_ble

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")


class Adapter1(ServiceInterface):
    """org.bluez.Adapter1 with the one property the doctor reads; the bus's built-in
    ObjectManager at "/" lists it, as BlueZ's does."""

    def __init__(self, powered: bool) -> None:
        super().__init__("org.bluez.Adapter1")
        self.powered = powered

    @dbus_property(access=PropertyAccess.READ)
    def Powered(self) -> b:  # type: ignore[name-defined]  # noqa: F821
        return self.powered


class BlueZ:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    def add_adapter(self, name: str, *, powered: bool) -> None:
        self.bus.export(f"/org/bluez/{name}", Adapter1(powered))


@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", f"--address=unix:path={tmp_path}/bus"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    yield address
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
async def bluez(bus_address: str) -> AsyncIterator[BlueZ]:
    bus = await MessageBus(bus_address=bus_address).connect()
    await bus.request_name("org.bluez")
    yield BlueZ(bus)
    bus.disconnect()


def _config() -> ShopEdgeConfig:
    return parse_config(
        {"device": {"store_id": "s", "device_id": "d"}, "ble": {"adapter": "hci0"}}, environ={}
    )


async def test_powered_adapter_passes(bluez: BlueZ, bus_address: str) -> None:
    bluez.add_adapter("hci0", powered=True)
    row = await check_ble(_config(), Environment(system_bus=bus_address))
    assert row.status is Status.PASS and row.detail == "hci0 present and powered"


async def test_powered_off_adapter_fails_with_hint(bluez: BlueZ, bus_address: str) -> None:
    bluez.add_adapter("hci0", powered=False)
    row = await check_ble(_config(), Environment(system_bus=bus_address))
    assert row.status is Status.FAIL and "powered off" in row.detail
    assert "bluetoothctl power on" in row.hint


async def test_missing_adapter_fails(bluez: BlueZ, bus_address: str) -> None:
    bluez.add_adapter("hci1", powered=True)
    row = await check_ble(_config(), Environment(system_bus=bus_address))
    assert row.status is Status.FAIL and row.detail == "no adapter hci0"


async def test_bluez_not_running_fails(bus_address: str) -> None:
    row = await check_ble(_config(), Environment(system_bus=bus_address))
    assert row.status is Status.FAIL
    assert "systemctl start bluetooth" in row.hint or "systemctl status bluetooth" in row.hint


async def test_no_system_bus_fails(tmp_path: Path) -> None:
    row = await check_ble(_config(), Environment(system_bus=f"unix:path={tmp_path}/nothing"))
    assert row.status is Status.FAIL and "cannot reach BlueZ" in row.detail
